"""The layout rules a newcomer relies on, checked on the project's own files."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {"train", "classify", "compare", "sample", "bench", "export"}  # the scripts users run at the top level
LONGEST_FUNCTION = 60  # lines, docstring included


def project_files():
    # hidden folders (.git, a local .venv) hold no project code
    return sorted(p for p in ROOT.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts))


def imported_modules(tree):
    """Every module name an import statement names, and every string given to importlib.import_module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant):
                yield node.args[0].value


def test_no_module_imports_an_entry_point_script():
    """Shared code lives in core/ (or data/, model.py); scripts import it, never each other. Tests may import scripts."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in project_files()
        if path.relative_to(ROOT).parts[0] != "tests"
        for name in imported_modules(ast.parse(path.read_text()))
        if name.split(".")[0] in ENTRY_POINTS
    ]
    assert offenders == []


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in project_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    ]
    assert long == []


def test_the_top_level_holds_the_scripts_and_the_model_only():
    """Everything else a script shares is in a package (core/, data/), so the top level reads as what users run."""
    modules = {p.stem for p in ROOT.glob("*.py")}
    assert modules == ENTRY_POINTS | {"model"}
