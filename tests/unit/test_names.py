"""One source for each name: every metric the serving runtime and the operator export is named in
modeldeploy/names.py and nowhere else, and a version's models:/ URI is built in one place."""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client import CollectorRegistry

from modeldeploy import names
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.serving.metrics import ServingMetrics, Windows
from tests.conftest import REPO

PACKAGE = REPO / "operator" / "modeldeploy"
NAMES = PACKAGE / "names.py"


def exported(registry: CollectorRegistry) -> set[str]:
    out = set()
    for family in registry.collect():
        out.add(family.name)
        out.update(s.name for s in family.samples)
    return out


def module_string_constants(path: Path) -> dict[str, str]:
    """Module-level NAME = "text" assignments (annotated or not)."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            found[target.id] = value.value
    return found


SUFFIXES = ("_total", "_created", "_bucket", "_sum", "_count")


def named(metric: str, defined: set[str]) -> bool:
    """A family or sample name whose metric names.py defines (with or without _total)."""
    stem = metric
    for suffix in SUFFIXES:
        stem = stem.removesuffix(suffix)
    return bool({metric, stem, stem + "_total"} & defined)


def test_every_exported_metric_name_is_defined_in_names_only() -> None:
    serving = ServingMetrics("m", "1", "r", 1.0, Windows(), (0.1,), (), classes=[0, 1])
    metrics = exported(serving.registry) | exported(OperatorMetrics().registry)
    metrics = {m for m in metrics if not m.startswith(("process_", "python_"))}
    in_names = set(module_string_constants(NAMES).values())
    missing = {m for m in metrics if not named(m, in_names)}
    assert not missing, f"exported but not named in names.py: {sorted(missing)}"
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == NAMES:
            continue
        clash = {
            k: v for k, v in module_string_constants(path).items() if v in metrics and "_" in v
        }
        assert not clash, f"{path.relative_to(REPO)} names metrics itself: {clash}"


def test_models_uri_is_built_only_by_names_model_version_uri() -> None:
    builders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr) and node.values:
                head = node.values[0]
                if isinstance(head, ast.Constant) and str(head.value).startswith("models:/"):
                    builders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert builders == [], builders
    assert names.model_version_uri("fraud", "7") == "models:/fraud/7"


REASONS = PACKAGE / "api" / "reasons.py"


def test_reasons_phases_and_outcomes_come_only_from_api_reasons() -> None:
    """A condition reason, phase, outcome or Event reason spelt out anywhere but api/reasons.py
    would drift from the one the planner writes (docstrings and comments aside)."""
    values = {v for v in module_string_constants(REASONS).values() if v[:1].isupper()}
    spelt = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == REASONS:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in values
                and id(node) not in docstrings
            ):
                spelt.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert spelt == [], spelt
