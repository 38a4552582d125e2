"""`stack down` leaves no process and no listening port behind."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import stack as devstack
import yaml

from tests.conftest import unavailable


def listening_ports() -> set[int]:
    return {c.laddr.port for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN}


def listeners(ports: set[int]) -> list[tuple[int, int | None, str]]:
    """(port, pid, command line) of whoever listens on `ports`: a failure names the culprit."""
    out = []
    for c in psutil.net_connections("inet"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port in ports:
            try:
                cmd = " ".join(psutil.Process(c.pid).cmdline())[:200] if c.pid else "?"
            except psutil.Error:
                cmd = "gone"
            out.append((c.laddr.port, c.pid, cmd))
    return out


def processes_naming(root: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(root) in cmd and p.pid != os.getpid():
            out.append(p)
    return out


def test_stack_down_leaves_no_process_or_listening_port(tmp_path: Path) -> None:
    """A second, private stack (its own state folder) comes up whole and goes down whole."""
    s = devstack.Stack(tmp_path / "stack")
    try:
        s.up(devstack.PARTS, build=False)
    except devstack.PartFailed as exc:
        s.down()
        unavailable(str(exc))
    try:
        ports = {info["port"] for part, info in s.state().items() if part in devstack.HEALTH_PATHS}
        kubeconfig = yaml.safe_load(Path(s.state()["cluster"]["kubeconfig"]).read_text())
        ports.add(int(kubeconfig["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]))
        assert ports <= listening_ports()
        started = processes_naming(s.root)
        # etcd, apiserver, controller-manager, scheduler, kwok, mlflow, prometheus, alertmanager
        assert len(started) >= 8, [p.info["cmdline"][:2] for p in started]
    finally:
        s.down()
    assert not processes_naming(s.root), "processes left after down"
    left = ports & listening_ports()
    assert not left, f"ports still listening after down: {listeners(left)}"
