"""The local stack: a real Kubernetes control plane (kwok nodes), MLflow, Prometheus, Alertmanager
and a Prometheus Pushgateway (batch pipelines push their stage metrics to it).

Everything runs as local processes on loopback ports picked at start, under one state folder
(`.stack/` at the repo root unless MODELDEPLOY_STACK_DIR says otherwise):

    env             shell file to `source`: KUBECONFIG, MLFLOW_TRACKING_URI, PROMETHEUS_URL, ...
    state.json      what runs: per part its pid (or kwok cluster name) and ports
    logs/<part>.log each part's output (logs/supervisor.log: restarts)
    kubeconfig      admin kubeconfig of the cluster
    kwok/           kwokctl's work folder (kwok.yaml: our KwokctlConfiguration; clusters/<name>/:
                    the cluster's certificates, etcd data, pids/ and logs/ of its components)
    mlflow/         sqlite registry and artifact store
    prometheus/     prometheus.yml, rules/*.yml (pipeline.yml: the pipeline alert rules),
                    targets/*.json (file service discovery), pushgateway/*.json (the Pushgateway
                    target, scraped with honor_labels), data
    pushgateway/    metrics.data (the pushed metrics, kept across restarts)
    alertmanager/   alertmanager.yml, data

Everything listens on 127.0.0.1 only: etcd (client and peer), the API server, controller-manager,
scheduler and kwok through kwokctl's `bindAddress`, MLflow, Prometheus, the Pushgateway and
Alertmanager (its clustering off) through their flags. Nothing here has authentication worth
the name (etcd hands out Secrets to anyone who can reach it), so nothing may be reachable from
the network.

The cluster starts with the Gateway API CRDs (HTTPRoute, Gateway, GatewayClass, ReferenceGrant;
`install_gateway_crds`), as a cluster with a Gateway implementation has them; the Prometheus
Operator's CRDs are installed on demand (`monitoring-crds`), since the operator's behaviour
without them is tested too. Both come from their projects' Go modules at the versions
dev/versions.env pins.

`up` is idempotent: a part that is running and healthy is left alone. It also starts the
supervisor (`stack.py supervise`, see `Supervisor`), which restarts a part or a cluster component
that exited, with back-off: after an API-server outage of 10-20 s or more the scheduler and the
controller-manager lose their leader lease and exit, and would otherwise stay down. `down` stops
the supervisor, every process the stack started, and then any process still naming the state
folder in its arguments, so nothing is left listening. The pytest fixtures (tests/conftest.py)
drive the same class.

Usage: python dev/stack.py up [part ...] | down | status | env | monitoring-crds | gateway-crds
       | supervise ROOT
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PARTS = ("cluster", "mlflow", "alertmanager", "pushgateway", "prometheus")
# Parts that are one process on one port (the cluster is kwokctl's many).
PROCESS_PARTS = ("mlflow", "alertmanager", "pushgateway", "prometheus")
NODE_COUNT = 3
# Detection is fast by design: alerts must reach the operator in seconds, not minutes
# (docs/alerting.md explains each setting).
SCRAPE_INTERVAL = "2s"
EVALUATION_INTERVAL = "2s"
RESEND_DELAY = "5s"
LOOPBACK = "127.0.0.1"
# The cluster's Service IP range (kwokctl_config): 65 534 Services; the default /24 held 253.
SERVICE_CIDR = "10.0.0.0/16"
CONTROLLER_API_QPS = 300  # kwokctl_config
# The supervisor: checks every second; restarts at once, then after 1 s, 2 s, 4 s ... at most
# 15 s while a component keeps exiting; a component up for a minute starts again from 1 s.
SUPERVISE_INTERVAL = 1.0
RESTART_BACKOFF_MAX = 15.0
RESTART_STABLE_AFTER = 60.0


class PartFailed(RuntimeError):
    """A part of the stack did not start; the message ends with the tail of its log."""

    def __init__(self, part: str, reason: str, log: Path | None = None) -> None:
        tail = _tail(log) if log else ""
        super().__init__(
            f"{part} did not start: {reason}" + (f"\n--- {log} ---\n{tail}" if tail else "")
        )
        self.part = part


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def log(msg: str) -> None:
    print(f"[stack {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    part: str,
    log_path: Path,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise PartFailed(part, f"exited with code {proc.returncode} before {what}", log_path)
        time.sleep(0.25)
    raise PartFailed(part, f"no {what} after {timeout:.0f}s", log_path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive. The process's own state is its main
    # thread's: a Go program whose main thread has exited shows Z while its other threads still
    # run and hold its sockets, so it is alive while any of its threads is.
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):
            if stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
    return False


def read_versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "dev" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out


def version_tuple(text: str) -> tuple[int, ...]:
    """The first dotted version in `text` ("prometheus, version 2.42.0+ds (...)" → (2, 42, 0))."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def installed(part: str, *commands: str) -> str:
    """The first of `commands` on PATH (Debian's name first), at least the version that
    dev/versions.env names for `part`; PartFailed saying how to install it otherwise."""
    binary = next((found for c in commands if (found := shutil.which(c))), None)
    if not binary:
        raise PartFailed(part, f"{commands[0]} is not installed ({SYSTEM_DEPS})")
    require_version(part, binary, read_versions()[f"{part.upper()}_MIN_VERSION"])
    return binary


def require_version(part: str, binary: str, minimum: str) -> None:
    """Fails the part, naming the fix, when `binary --version` is older than `minimum`
    (dev/versions.env): an old Prometheus rejects rule fields the operator renders."""
    res = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    found = version_tuple(res.stdout + res.stderr)
    if found < version_tuple(minimum):
        shown = ".".join(map(str, found)) or "unknown"
        raise PartFailed(
            part,
            f"{binary} is version {shown}; the stack needs >= {minimum} "
            "(dev/versions.env). Install a newer one on PATH.",
        )


@dataclass(frozen=True)
class Binaries:
    kube: Path
    kwok: Path
    helm: Path
    etcd: Path

    @classmethod
    def locate(cls, build: bool = False) -> Binaries:
        """Where dev/build-tools.sh caches the pinned binaries; builds them first if asked."""
        script = REPO / "dev" / "build-tools.sh"
        if build:
            subprocess.run([str(script)], check=True)
        out = subprocess.run(
            [str(script), "--print-dir"], check=True, capture_output=True, text=True
        )
        dirs = dict(line.split("=", 1) for line in out.stdout.split())
        return cls(
            Path(dirs["KUBE_BIN"]),
            Path(dirs["KWOK_BIN"]),
            Path(dirs["HELM_BIN"]),
            Path(dirs["ETCD_BIN"]),
        )

    def missing(self) -> list[str]:
        return [
            str(d)
            for d in (self.kube, self.kwok, self.helm, self.etcd)
            if not (d / ".complete").exists()
        ]

    def path_dirs(self) -> list[str]:
        return [str(self.kube), str(self.helm), str(self.kwok)]


def find_binary(dirs: Iterable[str], name: str) -> Path:
    """`name` (kubectl, kwokctl, helm, ...) in the first of `dirs` that holds it: callers name
    the tool they want instead of knowing which position its folder has in the list."""
    found = shutil.which(name, path=os.pathsep.join(dirs))
    if not found:
        raise FileNotFoundError(f"{name} is in none of {', '.join(dirs)} (make tools)")
    return Path(found)


class Stack:
    """One local stack living in `root`. Safe to use from several processes one after another."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (
            root or Path(os.environ.get("MODELDEPLOY_STACK_DIR", REPO / ".stack"))
        ).resolve()
        self.logs = self.root / "logs"
        self.state_file = self.root / "state.json"
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:6]
        self.cluster_name = (
            "modeldeploy" if self.root == (REPO / ".stack").resolve() else f"md-{digest}"
        )
        self._lock_depth = 0
        self._lock_fd: int | None = None
        self._thread_lock = threading.RLock()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Holds the state folder's lock (flock on state.lock; re-entrant within a process), so
        the supervisor and `up`/`down` in other processes never act on the same part at once."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.root / "state.lock", os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = None

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, part: str, info: dict[str, Any] | None) -> None:
        with self.locked():
            st = self.state()
            if info is None:
                st.pop(part, None)
            else:
                st[part] = info
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(st, indent=2))
            tmp.replace(self.state_file)
            self._write_env(st)

    def record_operator(
        self, pid: int, metrics_port: int, name: str = "operator", webhook_port: int | None = None
    ) -> None:
        """Records an operator replica started against this stack (the demo's), so the next run
        finds it running and `down` stops it with the rest."""
        self._save(name, {"pid": pid, "port": metrics_port, "webhook": webhook_port})

    def _update(self, part: str, **changes: Any) -> None:
        with self.locked():
            info = self.state().get(part)
            if info is not None:
                self._save(part, {**info, **changes})

    def env(self) -> dict[str, str]:
        """The variables the env file exports, for the parts that run."""
        st = self.state()
        env: dict[str, str] = {"MODELDEPLOY_STACK_DIR": str(self.root)}
        if "cluster" in st:
            env["KUBECONFIG"] = st["cluster"]["kubeconfig"]
        if "mlflow" in st:
            env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{st['mlflow']['port']}"
        if "prometheus" in st:
            env["PROMETHEUS_URL"] = f"http://127.0.0.1:{st['prometheus']['port']}"
        if "pushgateway" in st:
            env["PUSHGATEWAY_URL"] = f"http://127.0.0.1:{st['pushgateway']['port']}"
        if "alertmanager" in st:
            env["ALERTMANAGER_URL"] = f"http://127.0.0.1:{st['alertmanager']['port']}"
        if "operator_ports" in st:
            env["MODELDEPLOY_METRICS_PORT"] = str(st["operator_ports"]["metrics"])
            env["MODELDEPLOY_WEBHOOK_PORT"] = str(st["operator_ports"]["webhook"])
        if "alertmanager" in st:  # local stack only: the token Alertmanager sends (see alert_token)
            env["MODELDEPLOY_ALERT_WEBHOOK_TOKEN"] = self.alert_token()
            # Where a replica that starts leading re-learns the alerts pushed before it led.
            env["MODELDEPLOY_ALERTMANAGER_URL"] = env["ALERTMANAGER_URL"]
        if "prometheus" in st:  # where canary steps are judged
            env["MODELDEPLOY_PROMETHEUS_URL"] = env["PROMETHEUS_URL"]
        return env

    def _write_env(self, st: dict[str, Any]) -> None:
        lines = ["# written by dev/stack.py; source it: . .stack/env"]
        lines += [f"export {k}={v}" for k, v in self.env().items()]
        if "cluster" in st:
            lines.append(f"export PATH={':'.join(st['cluster']['path'])}:$PATH")
        lines.append("export MLFLOW_DISABLE_TELEMETRY=true")
        (self.root / "env").write_text("\n".join(lines) + "\n")

    def binary(self, name: str) -> Path:
        """A tool of the running cluster by name (kubectl, kwokctl, helm, kube-apiserver ...),
        from the folders dev/build-tools.sh built that `up` recorded (state.json cluster.path)."""
        info = self.state().get("cluster")
        if not info:
            raise RuntimeError("no cluster in the local stack: run `make stack-up` first")
        return find_binary(info["path"], name)

    def alert_token(self) -> str:
        """The bearer token Alertmanager sends to /alerts/alertmanager (a 0600 file)."""
        path = self.root / "alert-webhook.token"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def operator_ports(self) -> dict[str, int]:
        """Loopback ports reserved for an operator run against this stack (make run, demo).

        Alertmanager's receiver points at the webhook port, so they are fixed once per stack.
        """
        st = self.state()
        if "operator_ports" not in st:
            self._save("operator_ports", {"metrics": free_port(), "webhook": free_port()})
        return dict(self.state()["operator_ports"])

    # --- health ----------------------------------------------------------------------------
    def healthy(self, part: str) -> bool:
        info = self.state().get(part)
        if not info:
            return False
        if part == "cluster":
            return self._kubectl_ok(info)
        if not pid_alive(int(info["pid"])):
            return False
        return http_ok(f"http://127.0.0.1:{info['port']}{HEALTH_PATHS[part]}")

    def _kubectl_ok(self, info: dict[str, Any]) -> bool:
        kubectl = find_binary(info["path"], "kubectl")
        res = subprocess.run(
            [str(kubectl), "--kubeconfig", info["kubeconfig"], "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return res.returncode == 0 and res.stdout.strip() == "ok"

    # --- up / down -------------------------------------------------------------------------
    def up(self, parts: Iterable[str] = PARTS, build: bool = True) -> dict[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        wanted = [p for p in PARTS if p in set(parts)]
        self.operator_ports()
        for part in wanted:
            if self.healthy(part):
                log(f"{part}: already running")
            else:
                self.stop_part(part)  # leftovers of a crashed run
                log(f"{part}: starting")
                t0 = time.monotonic()
                STARTERS[part](self, build)
                log(f"{part}: ready in {time.monotonic() - t0:.1f}s")
            self._update(part, ready=True)  # from now on the supervisor restarts it
            self.ensure_supervisor()
        return self.env()

    def ensure_supervisor(self) -> None:
        """Starts `stack.py supervise ROOT` unless one runs for this stack."""
        with self.locked():
            info = self.state().get("supervisor")
            if info and is_supervisor(int(info["pid"])):
                return
            proc = spawn(
                [sys.executable, str(Path(__file__).resolve()), "supervise", str(self.root)],
                self.logs / "supervisor.log",
            )
            self._save("supervisor", {"pid": proc.pid, "restarts": {}})
            log(f"supervisor: started (pid {proc.pid}, log {self.logs / 'supervisor.log'})")

    def down(self) -> None:
        # Processes started for this stack by others (the demo's operator) go first.
        for name, info in self.state().items():
            if name not in PARTS and isinstance(info, dict) and "pid" in info:
                terminate(int(info["pid"]))
                self._save(name, None)
                log(f"{name}: stopped")
        for part in reversed(PARTS):
            self.stop_part(part)
        self._kill_strays()
        self._save("operator_ports", None)
        with contextlib.suppress(OSError):
            (self.root / "env").unlink()
        log("stack stopped")

    def stop_part(self, part: str) -> None:
        """Stops one part (and forgets it) if it runs; the other parts keep running. The part is
        forgotten first, under the lock, so the supervisor does not start it again."""
        with self.locked():
            info = self.state().get(part)
            if not info:
                return
            self._save(part, None)
        if part == "cluster":
            components = self.cluster_pids()
            self._kwokctl(info["path"], "delete", "cluster", check=False)
            # kwokctl returns before its components have exited, and an exiting process drops
            # its command line before its sockets: wait for each, or a port outlives `down`.
            for pid in components.values():
                terminate(pid, group=False)
        else:
            terminate(int(info["pid"]))
        if part == "pushgateway":
            (self.root / "prometheus" / "pushgateway" / "pushgateway.json").unlink(missing_ok=True)
        log(f"{part}: stopped")

    @property
    def kwok_cluster_dir(self) -> Path:
        return self.root / "kwok" / "clusters" / self.cluster_name

    def cluster_pids(self) -> dict[str, int]:
        """The cluster's component processes, from kwokctl's pid files (component → pid)."""
        out = {}
        for path in sorted((self.kwok_cluster_dir / "pids").glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                out[path.stem] = int(path.read_text().strip())
        return out

    def pids(self) -> dict[str, int]:
        """Every process this stack started and knows about (part or component → pid)."""
        out = {
            name: int(info["pid"])
            for name, info in self.state().items()
            if isinstance(info, dict) and "pid" in info
        }
        if "cluster" in self.state():
            out.update(self.cluster_pids())
        return out

    def _kill_strays(self) -> None:
        """Any process whose command line names the state folder was started by this stack."""
        me = os.getpid()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == me:
                continue
            try:
                cmdline = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
            if str(self.root) in cmdline and "dev/stack.py" not in cmdline:
                terminate(int(proc.name), group=False)

    # --- parts -----------------------------------------------------------------------------
    def _kwokctl(
        self, path: list[str], *args: str, check: bool = True, stdout: Any = subprocess.PIPE
    ) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            KWOK_WORKDIR=str(self.root / "kwok"),
            PATH=":".join(path) + ":" + os.environ.get("PATH", ""),
            KWOK_KUBE_VERSION=read_versions()["KUBERNETES_VERSION"],
        )
        cmd = [
            str(find_binary(path, "kwokctl")),
            "--name",
            self.cluster_name,
            "-c",
            str(self.root / "kwok" / "kwok.yaml"),
            *args,
        ]
        return subprocess.run(
            cmd,
            env=env,
            text=True,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            check=check,
            timeout=300,
        )

    def start_cluster(self, build: bool) -> None:
        bins = Binaries.locate(build=build)
        if bins.missing():
            raise PartFailed(
                "cluster",
                "binaries not built yet: run `make tools` (dev/build-tools.sh); "
                f"missing {', '.join(bins.missing())}",
            )
        kubeconfig = self.root / "kubeconfig"
        kubeconfig.unlink(missing_ok=True)
        (self.root / "kwok").mkdir(exist_ok=True)
        write_yaml(self.root / "kwok" / "kwok.yaml", kwokctl_config())
        path = bins.path_dirs()
        log_path = self.logs / "cluster.log"
        with log_path.open("w") as out:
            res = self._kwokctl(
                path,
                "create",
                "cluster",
                "--runtime",
                "binary",
                "--kube-apiserver-binary",
                str(bins.kube / "kube-apiserver"),
                "--kube-controller-manager-binary",
                str(bins.kube / "kube-controller-manager"),
                "--kube-scheduler-binary",
                str(bins.kube / "kube-scheduler"),
                "--kwok-controller-binary",
                str(bins.kwok / "kwok"),
                "--etcd-binary",
                str(bins.etcd / "etcd"),
                "--kubeconfig",
                str(kubeconfig),
                "--wait",
                "120s",
                check=False,
                stdout=out,
            )
        if res.returncode != 0:
            raise PartFailed("cluster", f"kwokctl create cluster exited {res.returncode}", log_path)
        info = {"name": self.cluster_name, "kubeconfig": str(kubeconfig), "path": path}
        self._save("cluster", info)
        kubectl = [str(bins.kube / "kubectl"), "--kubeconfig", str(kubeconfig)]
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump_all(kwok_nodes(NODE_COUNT)),
            text=True,
            check=True,
            capture_output=True,
        )
        wait_for(
            lambda: (
                subprocess.run(
                    [*kubectl, "wait", "--for=condition=Ready", "node", "--all", "--timeout=5s"],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ),
            90,
            "Ready nodes",
            "cluster",
            log_path,
        )
        # The default ServiceAccount must exist before pods can be created in a namespace.
        wait_for(
            lambda: (
                subprocess.run(
                    [*kubectl, "get", "serviceaccount", "default"], capture_output=True, check=False
                ).returncode
                == 0
            ),
            60,
            "default ServiceAccount",
            "cluster",
            log_path,
        )
        try:
            install_gateway_crds(kubectl)
        except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            raise PartFailed("cluster", f"Gateway API CRDs not installed: {detail}") from exc

    def start_mlflow(self, build: bool) -> None:
        (self.root / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
        self._start_process("mlflow", free_port())

    def start_alertmanager(self, build: bool) -> None:
        d = self.root / "alertmanager"
        (d / "data").mkdir(parents=True, exist_ok=True)
        webhook = f"http://127.0.0.1:{self.operator_ports()['webhook']}/alerts/alertmanager"
        write_yaml(d / "alertmanager.yml", alertmanager_config(webhook, self._token_file()))
        self._start_process("alertmanager", free_port())

    def start_pushgateway(self, build: bool) -> None:
        """Starts the Pushgateway and makes Prometheus scrape it, whether Prometheus starts
        after it (the target file is read at start) or already has a configuration: that is
        written again (a stack from before this part lacks the pushgateway job, and the
        supervisor restarts Prometheus with the file as it is) and reloaded if Prometheus runs."""
        (self.root / "pushgateway").mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._start_process("pushgateway", port)
        d = self.root / "prometheus"
        (d / "pushgateway").mkdir(parents=True, exist_ok=True)
        target = d / "pushgateway" / "pushgateway.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {}}]))
        tmp.replace(target)
        if (d / "prometheus.yml").exists():
            self._write_prometheus_files()
            if self.healthy("prometheus"):
                self.reload("prometheus")

    def start_prometheus(self, build: bool) -> None:
        self._write_prometheus_files()
        self._start_process("prometheus", free_port())

    def _write_prometheus_files(self) -> None:
        d = self.root / "prometheus"
        for sub in ("rules", "targets", "pushgateway", "data"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        am = self.state().get("alertmanager")
        write_yaml(d / "prometheus.yml", prometheus_config(d, am["port"] if am else None))
        write_yaml(d / "rules" / "pipeline.yml", {"groups": pipeline_rule_groups()})

    def _start_process(self, part: str, port: int) -> None:
        cmd, env = self.command(part, port)
        log_path = self.logs / f"{part}.log"
        proc = spawn(cmd, log_path, env)
        self._save(part, {"pid": proc.pid, "port": port})
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{port}{HEALTH_PATHS[part]}"),
            120 if part == "mlflow" else 60,
            f"{HEALTH_PATHS[part]} answer",
            part,
            log_path,
            proc,
        )

    def command(self, part: str, port: int) -> tuple[list[str], dict[str, str] | None]:
        """The command line (and environment, None: inherit) of a process part on `port`, with
        the config files `start_<part>` wrote; the supervisor restarts a part with the same."""
        if part == "mlflow":
            return self._mlflow_command(port)
        if part == "alertmanager":
            binary = installed(part, "prometheus-alertmanager", "alertmanager")
            d = self.root / "alertmanager"
            return [
                binary,
                f"--config.file={d / 'alertmanager.yml'}",
                f"--storage.path={d / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--cluster.listen-address=",  # no clustering: no gossip port at all
            ], None
        if part == "pushgateway":
            binary = installed(part, "prometheus-pushgateway", "pushgateway")
            d = self.root / "pushgateway"
            return [
                binary,
                f"--web.listen-address={LOOPBACK}:{port}",
                f"--persistence.file={d / 'metrics.data'}",
                "--persistence.interval=1m",
            ], None
        if part == "prometheus":
            binary = installed(part, "prometheus")
            d = self.root / "prometheus"
            return [
                binary,
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--web.enable-lifecycle",
                # A reload (new rules) empties the notifier's Alertmanager list for up to 5s;
                # alerts that start firing then are dropped and, by default, sent again only a
                # minute later. Re-sending every 5s bounds that loss (docs/alerting.md).
                f"--rules.alert.resend-delay={RESEND_DELAY}",
            ], None
        raise ValueError(f"{part} is not a process part")

    def _mlflow_command(self, port: int) -> tuple[list[str], dict[str, str]]:
        d = self.root / "mlflow"
        mlflow = Path(sys.executable).parent / "mlflow"
        env = dict(
            os.environ,
            MLFLOW_DISABLE_TELEMETRY="true",
            # Registry webhooks to the operator on loopback over plain http: local stack only.
            MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
            MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
            MLFLOW_WEBHOOK_CACHE_TTL="1",
            MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=_secret(d / "webhook-encryption.key"),
            PATH=f"{mlflow.parent}:{os.environ.get('PATH', '')}",
        )
        cmd = [
            str(mlflow),
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{d / 'mlflow.db'}",
            "--artifacts-destination",
            str(d / "artifacts"),
            "--workers",
            "1",
        ]
        return cmd, env

    # --- helpers for tests and the demo ----------------------------------------------------
    def add_scrape_target(
        self, name: str, address: str, labels: dict[str, str] | None = None
    ) -> Path:
        """Adds (or replaces) a target for Prometheus' file service discovery; picked up in ~2s."""
        path = self.root / "prometheus" / "targets" / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [address], "labels": labels or {}}]))
        tmp.replace(path)
        return path

    def remove_scrape_target(self, name: str) -> None:
        (self.root / "prometheus" / "targets" / f"{name}.json").unlink(missing_ok=True)

    def write_rules(self, name: str, groups: list[dict[str, Any]]) -> None:
        """Writes a Prometheus rule file and reloads Prometheus so it takes effect now."""
        write_yaml(self.root / "prometheus" / "rules" / f"{name}.yml", {"groups": groups})
        self.reload("prometheus")

    def remove_rules(self, name: str) -> None:
        (self.root / "prometheus" / "rules" / f"{name}.yml").unlink(missing_ok=True)
        self.reload("prometheus")

    def _token_file(self) -> Path:
        self.alert_token()
        return self.root / "alert-webhook.token"

    def set_alert_webhook(self, url: str) -> None:
        """Points Alertmanager's only receiver at `url` and reloads it."""
        write_yaml(
            self.root / "alertmanager" / "alertmanager.yml",
            alertmanager_config(url, self._token_file()),
        )
        self.reload("alertmanager")

    def reload(self, part: str) -> None:
        port = self.state()[part]["port"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{part} reload answered {resp.status}")


MONITORING_CRD_FILES = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
)
# The standard channel's kinds a canary with `trafficRouting.httpRoute` needs: the route, and
# what a user's route points at (its Gateway and GatewayClass, cross-namespace grants).
GATEWAY_CRD_FILES = (
    "gateway.networking.k8s.io_httproutes.yaml",
    "gateway.networking.k8s.io_gateways.yaml",
    "gateway.networking.k8s.io_gatewayclasses.yaml",
    "gateway.networking.k8s.io_referencegrants.yaml",
)
GATEWAY_BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"  # annotation on each CRD
GATEWAY_CRDS = (
    "httproutes.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "gatewayclasses.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
)


def go_module_dir(module: str, version: str) -> Path:
    """The folder of a published Go module at `version`, downloaded into the Go module cache
    (CRDs are taken from their projects' releases; no copy lives in this repo)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return Path(json.loads(out.stdout)["Dir"])


def monitoring_crd_files() -> list[Path]:
    """The ServiceMonitor and PrometheusRule CRDs from the Prometheus Operator's published Go
    module at the pinned version."""
    version = read_versions()["PROMETHEUS_OPERATOR_VERSION"]
    module = go_module_dir("github.com/prometheus-operator/prometheus-operator", version)
    root = module / "example" / "prometheus-operator-crd"
    return [root / name for name in MONITORING_CRD_FILES]


def gateway_crd_files() -> list[Path]:
    """The Gateway API's HTTPRoute, Gateway, GatewayClass and ReferenceGrant CRDs (standard
    channel) from its published Go module at the pinned version (GATEWAY_API_VERSION)."""
    version = read_versions()["GATEWAY_API_VERSION"]
    root = go_module_dir("sigs.k8s.io/gateway-api", version) / "config" / "crd" / "standard"
    return [root / name for name in GATEWAY_CRD_FILES]


def apply_crds(kubectl: list[str], files: list[Path], names: list[str]) -> None:
    """Server-side applies CRD files (large ones exceed client-side apply's annotation limit)
    and waits until the named CRDs are Established. Polled rather than `kubectl wait`, which
    can fail at once, not after its timeout, right after a CRD is created."""
    for path in files:
        res = subprocess.run(
            [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"kubectl apply -f {path} failed: {res.stderr.strip()}")
    deadline = time.monotonic() + 60
    for name in names:
        jsonpath = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
        while True:
            res = subprocess.run(
                [*kubectl, "get", "crd", name, "-o", jsonpath],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.stdout.strip() == "True":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not Established within 60s: {res.stderr.strip()}")
            time.sleep(0.2)


def install_monitoring_crds(kubectl: list[str]) -> None:
    apply_crds(
        kubectl,
        monitoring_crd_files(),
        ["servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"],
    )


def install_gateway_crds(kubectl: list[str]) -> None:
    """The Gateway API CRDs, Established. Unlike the monitoring CRDs (whose absence the operator
    reports, and tests exercise), every cluster of the stack has them from its start: a user's
    HTTPRoute is a kind the cluster knows, as on any cluster with a Gateway implementation."""
    apply_crds(kubectl, gateway_crd_files(), list(GATEWAY_CRDS))


def gateway_crds_current(kubectl: list[str]) -> bool:
    """Whether every Gateway API CRD is installed, Established, from the pinned release (its
    `gateway.networking.k8s.io/bundle-version` annotation): one API call instead of the seconds
    a re-apply takes, so the test fixtures can check every session."""
    version = read_versions()["GATEWAY_API_VERSION"]
    res = subprocess.run(
        [*kubectl, "get", "crd", *GATEWAY_CRDS, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:  # one of them is missing
        return False
    items = json.loads(res.stdout).get("items", [])

    def current(crd: dict[str, Any]) -> bool:
        annotations = crd["metadata"].get("annotations") or {}
        conditions = (crd.get("status") or {}).get("conditions") or []
        established = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
        return established and annotations.get(GATEWAY_BUNDLE_VERSION) == version

    return len(items) == len(GATEWAY_CRDS) and all(current(c) for c in items)


HEALTH_PATHS = {
    "mlflow": "/health",
    "prometheus": "/-/ready",
    "alertmanager": "/-/ready",
    "pushgateway": "/-/ready",
}
SYSTEM_DEPS = (
    "run `make system-deps` as root; it installs the Debian packages dev/versions.env names"
)
STARTERS: dict[str, Callable[[Stack, bool], None]] = {
    "cluster": Stack.start_cluster,
    "mlflow": Stack.start_mlflow,
    "alertmanager": Stack.start_alertmanager,
    "pushgateway": Stack.start_pushgateway,
    "prometheus": Stack.start_prometheus,
}


def _secret(path: Path) -> str:
    if not path.exists():
        from cryptography.fernet import Fernet  # ships with mlflow

        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def spawn(
    cmd: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts a detached process in its own session (so `down` can stop its whole group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=log_path.parent,
        )


def terminate(pid: int, group: bool = True, timeout: float = 15.0) -> None:
    """SIGTERM the process (and its group), then SIGKILL whatever is left after `timeout`."""

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    if not pid_alive(pid):
        return
    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    send(signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def write_yaml(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)


def kwokctl_config() -> dict[str, Any]:
    """kwokctl's configuration file: every component on loopback. `bindAddress` (default
    0.0.0.0) is what kwokctl passes to etcd's client and peer URLs, the API server's, the
    controller-manager's and the scheduler's --bind-address and kwok's --server-address.

    The API server also advertises loopback instead of the host's address. Kubernetes refuses a
    loopback address in the `kubernetes` Service's endpoints (and would log that every 10 s), so
    the API server does not maintain them: nothing runs in a pod here that would call it.

    The Service IP range is SERVICE_CIDR, not the API server's default /24 (253 Services: the
    254th failed to allocate under benchmarks/operator_scale_bench.py, one Service per
    ModelDeployment). Service IPs are virtual here (no kube-proxy, nothing routes to them), so a
    wide range costs nothing; it contains the default range, so the `kubernetes` Service keeps
    10.0.0.1. The range is fixed when a cluster is created: a running one keeps its old range
    until `make stack-down && make stack-up`.

    The controller-manager and the scheduler talk to the API server at CONTROLLER_API_QPS
    (burst twice that), not their defaults of 20 and 50 requests a second. At the defaults the
    controller-manager alone, ~11 requests per new Deployment (its ReplicaSet, pod, status
    updates and Events), needed ~9 minutes for 1000 Deployments and spent 1700 s of its
    requests waiting in its own rate limiter, so benchmarks/operator_scale_bench.py measured that
    limiter rather than the operator (issue 14). Large clusters raise these limits the same
    way; the API server's own priority and fairness still protects it. Also fixed when a
    cluster is created."""
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {"bindAddress": LOOPBACK},
        "componentsPatches": [
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    {"key": "advertise-address", "value": LOOPBACK},
                    {"key": "endpoint-reconciler-type", "value": "none"},
                    {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
                ],
            },
            *(
                {
                    "name": component,
                    "extraArgs": [
                        {"key": "kube-api-qps", "value": str(CONTROLLER_API_QPS)},
                        {"key": "kube-api-burst", "value": str(2 * CONTROLLER_API_QPS)},
                    ],
                }
                for component in ("kube-controller-manager", "kube-scheduler")
            ),
        ],
    }


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def is_supervisor(pid: int) -> bool:
    return pid_alive(pid) and " supervise " in _cmdline(pid)


class Supervisor:
    """Restarts what a stack started when it exits, with back-off; logs each restart.

    Watches, every SUPERVISE_INTERVAL, the process parts (MLflow, Alertmanager, the Pushgateway,
    Prometheus: started again with the same command on the same port, so URLs in .stack/env
    stay valid) and the cluster's components (from kwokctl's pid files; `kwokctl start cluster`
    starts the ones that are not running, with kwokctl's own command lines). Only parts `up` has
    marked ready are watched: a part that fails to start is `up`'s error, not a crash loop.
    Restart counts go to state.json (`supervisor.restarts`). Exits when the stack has no part
    left or another supervisor took over; `down` stops it first.

    A dead process may linger as a zombie when nothing reaps orphans (PID 1 in some containers),
    and kwokctl counts a zombie as running; so liveness is `pid_alive` (zombie = dead), and the
    pid file of a dead component is removed before kwokctl is asked to start it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.children: list[subprocess.Popen[bytes]] = []
        self.failures: dict[str, int] = {}
        self.last_restart: dict[str, float] = {}
        self.next_try: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        log(f"supervisor: watching {self.stack.root} (pid {os.getpid()})")
        while not stop.wait(SUPERVISE_INTERVAL):
            st = self.stack.state()
            if st.get("supervisor", {}).get("pid") != os.getpid():
                log("supervisor: another supervisor took over; exiting")
                return
            if not any(part in st for part in PARTS):
                log("supervisor: no part left to watch; exiting")
                self.stack._save("supervisor", None)
                return
            try:
                self.check(st)
            except Exception as exc:  # keep watching whatever one check hit
                log(f"supervisor: check failed: {exc!r}")
        log("supervisor: stopped")

    def check(self, st: dict[str, Any]) -> None:
        self.children = [c for c in self.children if c.poll() is None]  # reap
        for part in PROCESS_PARTS:
            info = st.get(part) or {}
            pid = int(info.get("pid", 0))
            if info.get("ready") and not pid_alive(pid) and self._due(part):
                self._restart_part(part, pid)
        cluster = st.get("cluster")
        if cluster and cluster.get("ready"):
            dead = {n: pid for n, pid in self.stack.cluster_pids().items() if not pid_alive(pid)}
            if dead and self._due("cluster"):
                self._restart_components(dead)

    def _due(self, key: str) -> bool:
        """Back-off: at once, then 1 s, 2 s ... RESTART_BACKOFF_MAX; reset after a stable run."""
        now = time.monotonic()
        if now < self.next_try.get(key, 0.0):
            return False
        if now - self.last_restart.get(key, -RESTART_STABLE_AFTER) >= RESTART_STABLE_AFTER:
            self.failures[key] = 0
        self.next_try[key] = now + min(2.0 ** self.failures[key], RESTART_BACKOFF_MAX)
        self.failures[key] += 1
        self.last_restart[key] = now
        return True

    def _count(self, names: Iterable[str]) -> None:
        info = self.stack.state().get("supervisor") or {}
        restarts = dict(info.get("restarts") or {})
        for name in names:
            restarts[name] = restarts.get(name, 0) + 1
        self.stack._update("supervisor", restarts=restarts)

    def _restart_part(self, part: str, pid: int) -> None:
        with self.stack.locked():
            info = self.stack.state().get(part)
            if not info or int(info["pid"]) != pid:  # stopped or restarted meanwhile
                return
            log_path = self.stack.logs / f"{part}.log"
            log(
                f"{part}: exited (pid {pid}); restarting on port {info['port']} "
                f"(try {self.failures[part]})"
            )
            with log_path.open("a") as out:
                out.write(
                    f"--- {time.strftime('%H:%M:%S')} restarted by the stack supervisor ---\n"
                )
            try:
                cmd, env = self.stack.command(part, int(info["port"]))
            except PartFailed as exc:
                log(f"{part}: cannot restart: {exc}")
                return
            proc = spawn(cmd, log_path, env)
            self.children.append(proc)
            self.stack._save(part, {**info, "pid": proc.pid})
            self._count([part])
        log(f"{part}: restarted as pid {proc.pid}")

    def _restart_components(self, dead: dict[str, int]) -> None:
        with self.stack.locked():
            info = self.stack.state().get("cluster")
            if not info:
                return
            before = self.stack.cluster_pids()
            log(
                "cluster: "
                + ", ".join(f"{n} (pid {pid})" for n, pid in sorted(dead.items()))
                + f" exited; kwokctl start cluster (try {self.failures['cluster']})"
            )
            for name, pid in dead.items():
                path = self.stack.kwok_cluster_dir / "pids" / f"{name}.pid"
                with contextlib.suppress(OSError):
                    if path.read_text().strip() == str(pid):
                        path.unlink()
            # --timeout bounds kwokctl's wait for /version (the API server may still be down);
            # the components are started before that wait.
            with (self.stack.logs / "cluster.log").open("a") as out:
                res = self.stack._kwokctl(
                    info["path"], "start", "cluster", "--timeout", "10s", check=False, stdout=out
                )
            now = self.stack.cluster_pids()
            # kwokctl starts every component that is not running, including one that exited
            # after `dead` was taken (during its wait for the API server): count by pid change.
            self._count(n for n, pid in now.items() if pid != before.get(n) and pid_alive(pid))
        log(
            f"cluster: kwokctl start cluster exited {res.returncode}; "
            + ", ".join(f"{n} now pid {now.get(n, '?')}" for n in sorted(dead))
        )


def kwok_nodes(count: int) -> list[dict[str, Any]]:
    """Nodes that kwok-controller manages (annotation kwok.x-k8s.io/node=fake): pods scheduled on
    them are reported Running and Ready without any process behind them."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{i}",
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": f"kwok-node-{i}",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {"taints": []},
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            },
        }
        for i in range(count)
    ]


def prometheus_config(d: Path, alertmanager_port: int | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "evaluation_interval": EVALUATION_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
        },
        "rule_files": [str(d / "rules" / "*.yml")],
        "scrape_configs": [
            {
                "job_name": "modeldeploy",
                "file_sd_configs": [
                    {"files": [str(d / "targets" / "*.json")], "refresh_interval": "2s"}
                ],
            },
            # The Pushgateway's target file exists while that part runs. honor_labels keeps the
            # pushed job/instance labels instead of the gateway's own.
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "file_sd_configs": [
                    {"files": [str(d / "pushgateway" / "*.json")], "refresh_interval": "2s"}
                ],
            },
        ],
    }
    if alertmanager_port:
        cfg["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        }
    return cfg


def pipeline_rule_groups() -> list[dict[str, Any]]:
    """The pipeline alert rules with their production defaults, from their one source."""
    if str(REPO / "operator") not in sys.path:
        sys.path.insert(0, str(REPO / "operator"))
    from modeldeploy.render.pipeline_rules import pipeline_rule_groups as groups

    return groups()


def alertmanager_config(webhook_url: str, token_file: Path | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = (
        {"http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}}
        if token_file
        else {}
    )
    return {
        "route": {
            "receiver": "modeldeploy",
            "group_by": ["alertname", "namespace", "modeldeployment", "model_version"],
            "group_wait": "1s",
            "group_interval": "5s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "modeldeploy",
                "webhook_configs": [
                    {"url": webhook_url, "send_resolved": True, "max_alerts": 0, **auth}
                ],
            }
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the stack (or the named parts); harmless when running")
    up.add_argument("parts", nargs="*", metavar="part", help=f"any of {', '.join(PARTS)}")
    up.add_argument("--no-build", action="store_true", help="fail instead of building binaries")
    sub.add_parser(
        "monitoring-crds",
        help="install the Prometheus Operator's ServiceMonitor and "
        "PrometheusRule CRDs (from its Go module) into the cluster",
    )
    sub.add_parser(
        "gateway-crds",
        help="install the Gateway API CRDs (HTTPRoute, Gateway, GatewayClass, ReferenceGrant; "
        "from its Go module) into the cluster; `up` does it when it starts the cluster",
    )
    sub.add_parser("down", help="stop everything the stack started")
    supervise = sub.add_parser(
        "supervise", help="restart what the stack at ROOT started when it exits"
    )
    supervise.add_argument("root", type=Path)
    sub.add_parser("status", help="show what runs and where")
    sub.add_parser("env", help="print the env file")
    args = parser.parse_args(argv)
    if args.cmd == "supervise":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        Supervisor(Stack(args.root)).run(stop)
        return 0
    stack = Stack()
    if args.cmd == "up":
        unknown = set(args.parts) - set(PARTS)
        if unknown:
            parser.error(
                f"unknown part(s) {', '.join(sorted(unknown))}; parts are {', '.join(PARTS)}"
            )
        try:
            stack.up(args.parts or PARTS, build=not args.no_build)
        except PartFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"stack is up; use it with:  source {stack.root / 'env'}")
        print((stack.root / "env").read_text())
    elif args.cmd in ("monitoring-crds", "gateway-crds"):
        info = stack.state().get("cluster")
        if not info:
            print("error: the cluster is not running (make stack-up)", file=sys.stderr)
            return 1
        kubectl = [str(stack.binary("kubectl")), "--kubeconfig", info["kubeconfig"]]
        if args.cmd == "monitoring-crds":
            install_monitoring_crds(kubectl)
            print("ServiceMonitor and PrometheusRule CRDs installed")
        else:
            install_gateway_crds(kubectl)
            print("Gateway API CRDs installed")
    elif args.cmd == "down":
        stack.down()
    elif args.cmd == "status":
        for part in PARTS:
            print(f"{part:13} {'running' if stack.healthy(part) else 'stopped'}")
        sup = stack.state().get("supervisor") or {}
        running = is_supervisor(int(sup.get("pid", 0)))
        restarts = ", ".join(f"{k} {v}x" for k, v in sup.get("restarts", {}).items())
        print(
            f"{'supervisor':13} {'running' if running else 'stopped'}"
            + (f" (restarts: {restarts})" if restarts else "")
        )
        for k, v in stack.env().items():
            print(f"  {k}={v}")
    elif args.cmd == "env":
        print((stack.root / "env").read_text() if (stack.root / "env").exists() else "", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
