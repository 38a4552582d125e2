"""What the processes of a local stack listen on: its own processes (dev/stack.py's state and
kwokctl's pid files), anything naming its state folder (e.g. the serving processes of
dev/podrunner.py), and all their descendants."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
import stack as devstack


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    ip: str
    port: int
    proto: str

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.ip).is_loopback

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid}) {self.proto} {self.ip}:{self.port}"


def stack_processes(stack: devstack.Stack) -> list[psutil.Process]:
    pids = set(stack.pids().values())
    root = str(stack.root)
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and root in " ".join(p.info["cmdline"] or []):
            pids.add(p.pid)
    return with_descendants(pids)


def with_descendants(pids: Iterable[int]) -> list[psutil.Process]:
    """These processes (those still alive) and all their children's children."""
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for q in [proc, *proc.children(recursive=True)]:
                if q.status() != psutil.STATUS_ZOMBIE:
                    procs[q.pid] = q
        except psutil.Error:
            continue
    return list(procs.values())


def listeners(procs: list[psutil.Process]) -> list[Listener]:
    """TCP sockets in LISTEN and UDP sockets bound but not connected (a UDP "listener")."""
    out = []
    for proc in procs:
        try:
            conns = getattr(proc, "net_connections", proc.connections)(kind="inet")
            name = Path(proc.exe()).name if proc.exe() else proc.name()
        except psutil.Error:
            continue
        for c in conns:
            tcp_listen = c.type == socket.SOCK_STREAM and c.status == psutil.CONN_LISTEN
            udp_bound = c.type == socket.SOCK_DGRAM and not c.raddr
            if tcp_listen or udp_bound:
                proto = "tcp" if tcp_listen else "udp"
                out.append(Listener(proc.pid, name, c.laddr.ip, c.laddr.port, proto))
    return out
