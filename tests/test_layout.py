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


def import_graph() -> dict[str, set[str]]:
    """{module: birdclef modules it imports anywhere in its body (function-level imports too)}."""
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
        for node in runtime_nodes(ast.parse(path.read_text())):
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
    assert {"birdclef.train", "birdclef.pseudo", "birdclef.examples", "birdclef.soundscapes"} <= set(graph)
    assert "birdclef.examples" in graph["birdclef.pseudo"]  # the parser sees function-level imports too
    assert cycles(graph) == []


def test_stages_do_not_reach_back():
    graph = import_graph()
    # the preprocess stage knows nothing of training; the model stages nothing of the notebooks' plots
    assert not {"birdclef.train", "birdclef.pseudo"} & graph["birdclef.preprocess"]
    assert "birdclef.train" not in graph["birdclef.pseudo"]
    # the train soundscapes' data (labelled windows, files) knows nothing of inference or the submission;
    # the metric knows nothing of the stages; a model family does not reach into another one's modules
    assert not {"birdclef.infer", "birdclef.submission", "birdclef.model"} & graph["birdclef.soundscapes"]
    assert not {m for m in graph["birdclef.evaluate"] if m not in ("birdclef.data", "birdclef.errors")}
    for module in (m for m in graph if m.startswith("birdclef.sed")):
        assert not {"birdclef.pseudo", "birdclef.preprocess", "birdclef.train", "birdclef.head_family"} & graph[module], module
    for stage in ("birdclef.train", "birdclef.infer", "birdclef.submission", "birdclef.preprocess"):
        assert not {"birdclef.plots", "birdclef.report", "birdclef.pipeline", "birdclef.cli"} & graph[stage], stage


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
