"""Helpers for the chart and kustomize tests: the pinned helm and kubectl, rendering, waiting.

helm and kubectl are the binaries `make tools` builds (dev/build-tools.sh --print-dir says where);
rendering needs no cluster, installing uses the `cluster` fixture of tests/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, unavailable

CHART = REPO / "charts" / "modeldeploy"
BASE = REPO / "manifests" / "base"
CRD_NAME = "modeldeployments.modeldeploy.io"


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path

    def run(
        self, argv: Sequence[str | Path], *, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(a) for a in argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={**os.environ, "HELM_NO_PLUGINS": "1"},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def helm_template(self, *args: str, release: str = "md") -> list[dict[str, Any]]:
        out = self.run([self.helm, "template", release, CHART, *args]).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def kustomize(self, path: Path = BASE) -> list[dict[str, Any]]:
        out = self.run([self.kubectl, "kustomize", path]).stdout
        return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="session")
def tools() -> Tools:
    proc = subprocess.run(
        ["bash", str(REPO / "dev" / "build-tools.sh"), "--print-dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirs = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    helm = Path(dirs.get("HELM_BIN", "/nonexistent")) / "helm"
    kubectl = Path(dirs.get("KUBE_BIN", "/nonexistent")) / "kubectl"
    for binary in (helm, kubectl):
        if not os.access(binary, os.X_OK):
            unavailable(f"{binary} is missing (dev/build-tools.sh builds it; `make tools`)")
    return Tools(helm=helm, kubectl=kubectl)


def one(docs: list[dict[str, Any]], kind: str, namespace: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def canonical_rules(rules: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """RBAC rules as sorted tuples: the same permissions compare equal whatever their order."""
    return sorted(
        (
            tuple(sorted(r.get("apiGroups", []))),
            tuple(sorted(r.get("resources", []))),
            tuple(sorted(r.get("verbs", []))),
            tuple(sorted(r.get("resourceNames", []))),
            tuple(sorted(r.get("nonResourceURLs", []))),
        )
        for r in rules
    )
