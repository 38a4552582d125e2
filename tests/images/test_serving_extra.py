"""The `serving` extra of pyproject.toml is what the serving image installs (with the package
itself under --no-deps): it must cover every library the serving runtime imports and must not
bring the operator's kopf or kubernetes. Checked here from the source and the installed
distributions' metadata, in a second, without building anything (tests/images/test_images.py
proves it on the built image)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.conftest import REPO

PACKAGE = REPO / "operator" / "modeldeploy"


def project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]  # type: ignore[no-any-return]


def serving_extra() -> list[Requirement]:
    return [Requirement(r) for r in project()["optional-dependencies"]["serving"]]  # type: ignore[index]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    candidates = [PACKAGE.joinpath(*parts, "__init__.py")]
    if parts:
        candidates.append(PACKAGE.joinpath(*parts[:-1], f"{parts[-1]}.py"))
    return next((c for c in candidates if c.exists()), None)


def serving_imports() -> set[str]:
    """Top-level names of the third-party modules the serving runtime can import: every import
    statement (lazy ones too) of modeldeploy.serving and of the modeldeploy modules it reaches."""
    todo = [f"modeldeploy.serving.{p.stem}" for p in (PACKAGE / "serving").glob("*.py")]
    todo.append("modeldeploy.serving")  # `modeldeploy serve` enters through modeldeploy.cli,
    # whose other branches import the operator: the image runs only its `serve` branch.
    seen: set[str] = set()
    third_party: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        assert path is not None, module
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "modeldeploy":
                    if module_file(name) is not None:
                        todo.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.add(top)
    assert not any(m.startswith("modeldeploy.controller") for m in seen), seen
    return third_party


def closure(requirements: list[Requirement]) -> set[str]:
    """The installed distributions these requirements pull in (extras' own markers ignored)."""
    out: set[str] = set()
    todo = [canonical(r.name) for r in requirements]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        for line in md.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonical(req.name))
    return out


def test_serving_extra_covers_every_library_the_serving_runtime_imports() -> None:
    provided = closure(serving_extra())
    by_module = md.packages_distributions()
    imports = serving_imports()
    assert {"mlflow", "numpy", "pandas", "prometheus_client", "uvicorn", "yaml"} <= imports
    missing = {
        m: by_module.get(m)
        for m in imports
        if not {canonical(d) for d in by_module.get(m, [])} & provided
    }
    assert missing == {}, f"imported by the serving runtime but not in the serving extra: {missing}"


def test_serving_extra_brings_neither_kopf_nor_kubernetes() -> None:
    assert not {"kopf", "kubernetes"} & closure(serving_extra())


def test_serving_extra_shares_the_packages_bounds() -> None:
    base = {canonical(r.name): r.specifier for r in map(Requirement, project()["dependencies"])}  # type: ignore[arg-type]
    for req in serving_extra():
        if canonical(req.name) in base:
            assert req.specifier == base[canonical(req.name)], req
