"""The packages are layered: no module imports (at the top or inside a function) a module that
imports it back, directly or through others, so each can be read and tested from the bottom up
(docs/design.md, "Who owns what")."""
import ast

import pytest

from conftest import REPO


def imports(path, package):
    """The modules of ecg/ and jetson/ that `path` imports, as 'package.name'."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1:        # from .x import y / from . import x, y
                base, parts = package, [package] + [p for p in parts if p]
            else:                      # from ecg.x import y / from jetson import x
                base = parts[0]
            if base in ("ecg", "jetson"):
                out.update([f"{base}.{parts[1]}"] if len(parts) > 1 else [f"{base}.{a.name}" for a in node.names])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] in ("ecg", "jetson") and "." in a.name)
    return {m for m in out if m and (REPO / m.replace(".", "/")).with_suffix(".py").is_file()}


def graph():
    return {f"{pkg}.{p.stem}": imports(p, pkg) for pkg in ("ecg", "jetson")
            for p in sorted((REPO / pkg).glob("*.py")) if p.stem != "__init__"}


def find_cycle(g):
    """One import cycle of the graph {module: modules it imports} as a path, or None."""
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return None
        if state.get(m) == "open":
            return path[path.index(m):] + [m]
        state[m] = "open"
        for n in sorted(g.get(m, ())):
            found = visit(n, path + [m])
            if found:
                return found
        state[m] = "done"
        return None

    for m in sorted(g):
        found = visit(m, [])
        if found:
            return found
    return None


def test_the_import_graph_has_no_cycle():
    g = graph()
    assert g["ecg.training"] >= {"ecg.inference", "ecg.model"} and "jetson.morphology" in g["ecg.preprocess"]
    assert g["jetson.streaming"] >= {"jetson.qrs", "jetson.common"}   # relative imports are seen
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_finds_the_upward_import_this_project_had(tmp_path):
    """ecg/model.py once imported ecg/training.py, which imports the model: a cycle."""
    p = tmp_path / "model.py"
    p.write_text("from .training import snapshot\nfrom ecg import evaluation\n")
    assert imports(p, "ecg") == {"ecg.training", "ecg.evaluation"}
    g = {**graph(), "ecg.model": imports(p, "ecg")}
    assert find_cycle(g) in (["ecg.model", "ecg.training", "ecg.model"], ["ecg.training", "ecg.model", "ecg.training"])
