"""The packages are layered: no module imports (at the top or inside a function) a module that
imports it back, directly or through others, so each can be read and tested from the bottom up
(docs/design.md, "Who owns what")."""
import ast


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


def test_numbered_scripts_are_thin_and_jetson_modules_short():
    """Scripts parse arguments and orchestrate (main <= 45 lines; the work is in ecg/); no device
    module over 350 lines (one responsibility each)."""
    for script in sorted(REPO.glob("[1-7]_*.py")):
        mains = [n for n in ast.parse(script.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert len(mains) == 1 and mains[0].args.args[0].arg == "argv", script.name
        start = min([mains[0].lineno] + [d.lineno for d in mains[0].decorator_list])
        assert mains[0].end_lineno - start + 1 <= 45, (script.name, mains[0].end_lineno - start + 1)
    for module in sorted((REPO / "jetson").glob("*.py")):
        assert len(module.read_text().splitlines()) <= 350, module.name


def test_tiers_are_marked_one_way():
    """Tiers come from fixtures (conftest.SLOW_FIXTURES, `mitdb`), never from marks in a test
    file; a fixture that fetches a slow fixture by name is itself listed as slow."""
    import re

    from conftest import SLOW_FIXTURES

    for path in sorted((REPO / "tests").glob("test_*.py")):
        text = path.read_text()
        assert not re.search(r"pytest\.mark\.(slow|data)\b|^pytestmark", text, re.M), path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, (ast.Call, ast.Attribute)) and "fixture" in ast.unparse(d) for d in node.decorator_list):
                fetched = set(re.findall(r'getfixturevalue\("(\w+)"\)', ast.unparse(node)))
                assert not fetched & SLOW_FIXTURES or node.name in SLOW_FIXTURES, (path.name, node.name)
