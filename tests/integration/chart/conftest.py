"""Helpers for the chart and kustomize tests: the pinned helm and kubectl, rendering, waiting.

helm and kubectl are the binaries `make tools` builds (dev/build-tools.sh --print-dir says where);
rendering needs no cluster, installing uses the `cluster` fixture of tests/conftest.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack import free_port

from tests.conftest import REPO, Cluster, unavailable

CHART = REPO / "charts" / "modeldeploy"
BASE = REPO / "manifests" / "base"
CRD_NAME = "modeldeployments.modeldeploy.io"
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


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


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig with the API server's URL and CA and the token: no admin credentials."""
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = admin["clusters"][0]["cluster"]
    ca = (
        server.get("certificate-authority-data")
        or base64.b64encode(Path(server["certificate-authority"]).read_bytes()).decode()
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server["server"], "certificate-authority-data": ca}}
        ],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o444)
    return path


def operator_command(
    deployment: dict[str, Any], namespace: str, ports: dict[str, int]
) -> tuple[list[str], dict[str, str]]:
    """The chart Deployment's arguments and environment for a process on the host's network:
    endpoints on 127.0.0.1 and free ports, the downward-API values filled in as a pod has them."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = []
    for arg in container["args"]:
        flag = arg.split("=", 1)[0]
        if flag == "--bind-address":
            arg = "--bind-address=127.0.0.1"
        elif flag in ("--metrics-port", "--webhook-port", "--health-port"):
            arg = f"{flag}={ports[flag]}"
        args.append(arg)
    downward = {
        "metadata.name": f"{deployment['metadata']['name']}-chart-identity",
        "metadata.namespace": namespace,
        "status.podIP": "127.0.0.1",
    }
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = downward[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return args, env


@dataclass(frozen=True)
class ChartIdentity:
    """How the chart runs the operator in one watched namespace, for a process or a container
    outside the cluster: its arguments and environment, a kubeconfig holding only the chart's
    ServiceAccount token, its ports, and the Lease its leader-election Role lets it hold."""

    args: list[str]
    env: dict[str, str]
    kubeconfig: Path
    ports: dict[str, int]
    lease: str


@contextmanager
def chart_identity(
    tools: Tools, cluster: Cluster, namespace: str, mlflow_uri: str, workdir: Path
) -> Iterator[ChartIdentity]:
    """Render the chart namespace-scoped to `namespace`, apply only its RBAC, and give the chart's
    ServiceAccount token (TokenRequest) in a kubeconfig; its cluster-scoped objects are deleted
    at the end (the namespace takes the rest)."""
    release = f"id-{namespace[-5:]}"
    docs = tools.helm_template(
        "--namespace", namespace,
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", f"mlflow.trackingUri={mlflow_uri}",
        release=release,
    )  # fmt: skip
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    cluster_scoped = [d for d in rbac if d["kind"].startswith("Cluster")]
    deployment = one(docs, "Deployment")
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    try:
        tools.run(
            [*cluster.kubectl, "apply", "-n", namespace, "-f", "-"],
            stdin="\n---\n".join(json.dumps(d) for d in rbac),
        )
        token = tools.run(
            [*cluster.kubectl, "-n", namespace, "create", "token", account, "--duration=1h"]
        ).stdout.strip()
        kubeconfig = token_kubeconfig(cluster, token, workdir / "kubeconfig")
        ports = {f: free_port() for f in ("--metrics-port", "--webhook-port", "--health-port")}
        args, env = operator_command(deployment, namespace, ports)
        assert env["MLFLOW_TRACKING_URI"] == mlflow_uri
        yield ChartIdentity(args, env, kubeconfig, ports, deployment["metadata"]["name"])
    finally:
        tools.run(
            [*cluster.kubectl, "delete", "--ignore-not-found", "-f", "-"],
            stdin="\n---\n".join(json.dumps(d) for d in cluster_scoped),
            check=False,
        )
