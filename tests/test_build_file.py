"""BUILD cannot rot: it parses as Starlark, and every module and test file has a target."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("mnm_keras", "tf_agents_ext", "examples", "benchmarks")
RULES = ("py_library", "py_binary", "py_test", "package")


def _targets():
    tree = ast.parse((ROOT / "BUILD").read_text(), filename="BUILD")
    targets = []
    for statement in tree.body:
        assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call), (
            f"BUILD line {statement.lineno}: only rule calls are expected"
        )
        call = statement.value
        rule = call.func.id
        assert rule in RULES, f"BUILD line {statement.lineno}: unknown rule {rule}"
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        targets.append((rule, kwargs))
    return targets


def test_build_parses_and_names_are_unique():
    names = [kw["name"] for rule, kw in _targets() if rule != "package"]
    assert len(names) == len(set(names)), names


def test_every_module_is_in_a_library():
    in_libraries = {
        src for rule, kw in _targets() if rule == "py_library" for src in kw.get("srcs", [])
    }
    modules = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert modules - in_libraries == set(), "modules without a py_library"
    assert (
        in_libraries
        - modules
        - {
            "tests/__init__.py",
            "tests/numpy_reference.py",
            "tests/babi_data.py",
            "tests/backend_models.py",
            "tests/cell_arguments.py",
            "tests/diverging_maze.py",
        }
        == set()
    )


def test_every_test_file_has_a_py_test():
    tests = {src for rule, kw in _targets() if rule == "py_test" for src in kw["srcs"]}
    files = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")}
    assert files == tests


def test_every_source_exists_and_deps_resolve():
    targets = _targets()
    names = {kw["name"] for rule, kw in targets if rule != "package"}
    for _, kw in targets:
        for src in kw.get("srcs", []) + kw.get("data", []):
            assert (ROOT / src).exists(), f"{kw['name']}: missing {src}"
        for dep in kw.get("deps", []):
            assert dep.startswith(":") and dep[1:] in names, f"{kw['name']}: unknown dep {dep}"
