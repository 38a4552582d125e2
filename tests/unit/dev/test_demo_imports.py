"""`make demo` runs from a checkout's dev/ alone: what it needs (the stack, the flaky model)
lives in dev/ or the package, never in tests/, which may change for test reasons only."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def imported_modules(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (imports inside functions included)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def test_demo_imports_nothing_from_tests() -> None:
    modules = imported_modules(REPO / "dev" / "demo.py")
    assert modules, "dev/demo.py: no imports found (wrong file?)"
    from_tests = [m for m in modules if m == "tests" or m.startswith("tests.")]
    assert not from_tests, f"dev/demo.py imports from tests/: {from_tests}"


def test_imported_modules_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "demo.py"
    source.write_text("import os\n\ndef f():\n    from tests.e2e import flaky_model\n")
    assert imported_modules(source) == ["os", "tests.e2e"]
