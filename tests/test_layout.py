"""The package's shape: data flows one way, so no module imports (even lazily) one that imports it back."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "birdclef"


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
        for node in ast.walk(ast.parse(path.read_text())):
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
    for stage in ("birdclef.train", "birdclef.infer", "birdclef.submission", "birdclef.preprocess"):
        assert not {"birdclef.plots", "birdclef.report", "birdclef.pipeline", "birdclef.cli"} & graph[stage], stage
