"""The package's shape: data flows one way, so no module imports (even lazily) one that imports it back."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "birdclef"


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
                                         or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (imports for annotations only,
    never run); their ``else`` branches are kept."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _type_checking(node):
            todo.extend([node.test, *node.orelse])
        else:
            todo.extend(ast.iter_child_nodes(node))


def test_annotation_only_imports_are_not_edges_but_every_other_import_is():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                     "def f():\n    import c\n")
    names = {a.name for n in runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"b", "c"}


def import_graph(*, annotations: bool = False) -> dict[str, set[str]]:
    """{module: birdclef modules it imports anywhere in its body (function-level imports too)};
    ``annotations``: the imports under ``if TYPE_CHECKING:`` too."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        deps = set()
        tree = ast.parse(path.read_text())
        for node in (ast.walk(tree) if annotations else runtime_nodes(tree)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("birdclef"):
                deps.update(owner(f"{node.module}.{a.name}") or owner(node.module) for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(owner(a.name) for a in node.names if a.name.startswith("birdclef"))
        deps -= {name, "birdclef", None}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"birdclef.models.train", "birdclef.models.pseudo", "birdclef.models.examples", "birdclef.features.soundscapes"} <= set(graph)
    assert "birdclef.models.examples" in graph["birdclef.models.pseudo"]  # the parser sees function-level imports too
    assert cycles(graph) == []


def test_annotation_imports_close_no_circle():
    """Counting `TYPE_CHECKING` imports too, no module joins a circle: the types the floors share live in
    birdclef.contracts, beneath all of them (issue 33, item 5; the last circle ran through eight modules)."""
    assert cycles(import_graph(annotations=True)) == []


def test_the_settings_protocol_names_only_config_fields():
    """The floors beneath config read a run's settings through contracts.Settings: every attribute it names is
    a Config field of the same type, so a renamed or retyped field cannot leave the protocol behind."""
    import dataclasses
    import typing

    from birdclef.config import Config
    from birdclef.contracts import Settings

    fields = {f.name: f.type for f in dataclasses.fields(Config)}
    named = typing.get_type_hints(Settings)
    assert named and set(named) <= set(fields)
    hints = typing.get_type_hints(Config)
    assert {k: hints[k] for k in named} == named


def test_stages_do_not_reach_back():
    graph = import_graph()
    # the preprocess stage knows nothing of training; the model stages nothing of the notebooks' plots
    assert not {"birdclef.models.train", "birdclef.models.pseudo"} & graph["birdclef.features.preprocess"]
    assert "birdclef.models.train" not in graph["birdclef.models.pseudo"]
    # the train soundscapes' data (labelled windows, files) knows nothing of inference or the submission;
    # the metric knows nothing of the stages; a model family does not reach into another one's modules
    assert not {"birdclef.inference.predict", "birdclef.submission.submit", "birdclef.models.head"} & graph["birdclef.features.soundscapes"]
    assert not {m for m in graph["birdclef.data.metric"] if m not in ("birdclef.data.competition", "birdclef.errors")}
    for module in (m for m in graph if m.startswith("birdclef.models.sed")):
        assert not {"birdclef.models.pseudo", "birdclef.features.preprocess", "birdclef.models.train", "birdclef.models.head_family"} & graph[module], module
    for stage in ("birdclef.models.train", "birdclef.inference.predict", "birdclef.submission.submit", "birdclef.features.preprocess"):
        assert not {"birdclef.report.plots", "birdclef.report.tables", "birdclef.pipeline", "birdclef.cli"} & graph[stage], stage



# The package's floors, bottom to top: a module imports only modules of its own floor or one beneath
# (README, "Package layout"). A stage folder is one floor; the three registries config validates against
# (backbones, post-processing steps, the model-family protocol) sit beneath config, the stages above it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("contracts", "errors", "io", "params", "progress", "workdir"),  # the ground: no birdclef import
    ("data",),  # the competition's layout and tables, audio, sessions, the metric, mixing, the demo
    ("backbones",),  # the backbone registry and its members
    ("postprocess",),  # the chain of named steps, priors
    ("family",),  # the model-family protocol
    ("config",),  # one frozen Config, validated against the registries beneath
    ("runs", "pipeline"),  # the runs table; the notebook runner
    ("features",),  # speech, embeddings, preprocess, zero-shot scores, labelled soundscapes
    ("models",),  # the MLP head and its training, the context model, SED
    ("inference",),  # ensembles of model families → window probabilities, in a time budget
    ("submission",),  # the CSV and the Kaggle bundle
    ("report",),  # tables, figures, EDA
    ("cli", "notebook"),  # the command line; the notebooks' setup
)


def floor(module: str) -> int:
    """The index in :data:`LAYERS` of ``module`` (``birdclef.<name>[...]``); KeyError when none holds it."""
    top = module.split(".")[1]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise KeyError(module)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in graph.items() if a != "birdclef" for b in deps
                  if b != "birdclef" and floor(b) > floor(a))


def test_the_floor_check_sees_an_import_running_up():
    assert upward_imports({"birdclef.data.metric": {"birdclef.models.train"}}) == [
        "birdclef.data.metric -> birdclef.models.train"]
    assert upward_imports({"birdclef.models.train": {"birdclef.data.metric"}}) == []


def test_every_module_is_on_a_floor_and_no_import_runs_up():
    graph = import_graph()
    top = {m.split(".")[1] for m in graph if m != "birdclef"}
    assert top == {name for names in LAYERS for name in names}  # a new top-level module or folder is placed here
    assert len([m for m in graph if m.count(".") == 1 and not (PACKAGE / m.split(".")[1]).is_dir()]) <= 12
    assert upward_imports(graph) == []
    assert upward_imports(import_graph(annotations=True)) == []  # not even for an annotation


# ("notebooks" is left out: the repository's own notebooks/ folder is spelled where it is looked up)
LAYOUT_NAMES = {"model", "preprocess", "embeddings", "head.pt", "manifest.csv", "submission.csv",
                "runs.csv", "soundscape_windows.csv", "val_soundscapes", "sed"}


def spelled_run_paths(source: str) -> list[tuple[int, str]]:
    """(line, name) of every ``<path> / "<name>"`` whose name is a ``work_dir`` layout name."""
    return [(node.lineno, node.right.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
            and isinstance(node.right, ast.Constant) and node.right.value in LAYOUT_NAMES]


def test_the_spelled_path_finder_sees_a_join():
    assert spelled_run_paths('p = Path(w) / "model" / "x"\nq = a / "b"\n') == [(1, "model")]


def test_no_module_but_workdir_spells_a_path_under_work_dir():
    """Every stage, the Kaggle bundle and the benchmarks take their paths from birdclef.workdir."""
    roots = [PACKAGE, PACKAGE.parents[1] / "benchmarks"]
    found = {str(path.relative_to(PACKAGE.parents[1])): hits
             for root in roots for path in root.rglob("*.py") if path.name != "workdir.py"
             for hits in [spelled_run_paths(path.read_text())] if hits}
    assert found == {}


def test_a_run_layout_names_each_stage_folder_and_links_shared_caches(tmp_path):
    from birdclef.config import build_config
    from birdclef.workdir import RunLayout

    layout = RunLayout.of(build_config(work_dir=str(tmp_path / "run")))
    assert layout.root == tmp_path / "run"
    assert layout.manifest.parent == layout.preprocess and layout.model.head.parent == layout.model_dir
    assert layout.embedding_cache("k").parent == layout.embeddings
    shared = RunLayout(tmp_path / "shared")
    other = RunLayout(tmp_path / "other")
    other.link_caches(shared)
    (shared.embeddings / "a.npz").write_bytes(b"x")
    assert (other.embeddings / "a.npz").read_bytes() == b"x" and other.preprocess.resolve() == shared.preprocess.resolve()
    third = RunLayout(tmp_path / "third")
    third.link_caches(shared, preprocess=False)
    assert third.embeddings.is_symlink() and not third.preprocess.exists()


def harness_imports(source: str) -> list[int]:
    """Lines of ``source`` that import the benchmark harness (birdclef_bench), at any level."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "birdclef_bench"
            or isinstance(node, ast.Import) and any(a.name.split(".")[0] == "birdclef_bench" for a in node.names)]


def test_the_harness_finder_sees_an_import_inside_a_function():
    assert harness_imports("def f():\n    from birdclef_bench.realbench import x\nimport birdclef\n") == [2]


def test_nothing_in_the_product_imports_the_benchmark_harness():
    """The harness (heldout tasks, the real-audio benchmark, the experiments CLI) sits on top of the
    product: it calls the stage functions; no product module reaches it."""
    bench = PACKAGE.parent / "birdclef_bench"
    assert {"experiments.py", "realbench.py", "heldout.py"} <= {p.name for p in bench.glob("*.py")}
    assert not any((PACKAGE / name).exists() for name in ("experiments.py", "realbench.py", "heldout.py"))
    found = {str(p.relative_to(PACKAGE.parent)): lines for p in PACKAGE.rglob("*.py")
             for lines in [harness_imports(p.read_text())] if lines}
    assert found == {}
