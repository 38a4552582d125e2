"""dev/stack.py's public API for the demo and the fixtures, on a state folder written by hand:
no process is started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stack as devstack  # tests/conftest.py puts dev/ on sys.path


def tool(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def stack_with_cluster(root: Path, path: list[Path]) -> devstack.Stack:
    root.mkdir(parents=True, exist_ok=True)
    cluster = {"name": "t", "kubeconfig": str(root / "kubeconfig"), "path": [str(p) for p in path]}
    (root / "state.json").write_text(json.dumps({"cluster": cluster}))
    return devstack.Stack(root)


def test_binaries_are_found_by_name_whatever_the_order_of_their_folders(tmp_path: Path) -> None:
    kube, helm, kwok = tmp_path / "kubernetes", tmp_path / "helm", tmp_path / "kwok"
    kubectl, kwokctl = tool(kube, "kubectl"), tool(kwok, "kwokctl")
    tool(helm, "helm")
    for order in ([kube, helm, kwok], [kwok, kube, helm]):
        stack = stack_with_cluster(tmp_path / "stack", order)
        assert stack.binary("kubectl") == kubectl
        assert stack.binary("kwokctl") == kwokctl


def test_a_missing_binary_or_cluster_is_an_error_that_says_so(tmp_path: Path) -> None:
    stack = stack_with_cluster(tmp_path / "stack", [tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="kubectl"):
        stack.binary("kubectl")
    with pytest.raises(RuntimeError, match="no cluster"):
        devstack.Stack(tmp_path / "other").binary("kubectl")


def test_recorded_operator_replicas_are_in_the_state_for_down_to_stop(tmp_path: Path) -> None:
    stack = devstack.Stack(tmp_path / "stack")
    stack.record_operator(pid=1234, metrics_port=8080)
    stack.record_operator(pid=1235, metrics_port=8090, name="operator-standby", webhook_port=8091)
    assert stack.state()["operator"] == {"pid": 1234, "port": 8080, "webhook": None}
    assert stack.state()["operator-standby"] == {"pid": 1235, "port": 8090, "webhook": 8091}
    assert stack.pids()["operator"] == 1234
    assert stack.pids()["operator-standby"] == 1235


def test_stopping_a_part_that_does_not_run_changes_nothing(tmp_path: Path) -> None:
    stack = stack_with_cluster(tmp_path / "stack", [])
    stack.stop_part("mlflow")
    assert set(stack.state()) == {"cluster"}
