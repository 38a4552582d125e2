"""One serving process standing in for one pod, the way the kubelet would run its container.

Its one job: **start, watch and stop `<venv>/bin/modeldeploy serve` for a pod**, with the
environment the kubelet would give the pod's `model` container:

* env and envFrom of the container, `valueFrom` resolved against the API (fieldRef, secretKeyRef,
  configMapKeyRef; `$(VAR)` expanded against the variables defined before, `$$` escapes);
  status.podIP and status.hostIP are 127.0.0.1. A missing secret or config map that is not
  optional raises `EnvNotReady`: the kubelet would not start the container either.
* from the "image": only HOME, LANG, LC_ALL, TZ and the CA bundle variables of this process,
  PATH with the venv's bin first, TMPDIR under the pod's work dir.
* PORT (a free loopback port) and MODELDEPLOY_HOST (127.0.0.1) override the pod's.
* working files under `<stack>/podrunner/<ns>/<pod>-<uid>/`, removed when the process stops
  (so `dev/stack.py down` also kills any server a crashed runner left behind).
* a process that exits is started again after a back-off (1 s doubling to 30 s), like a
  crash-looping container; stopping is SIGTERM, SIGKILL after the pod's grace period (at most
  15 s).

dev/podrunner.py decides which pods get a process and when; this module does not list pods.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack as devstack
from monitoring_emulation import serving_container

log = logging.getLogger("podrunner")

LABEL_MODELDEPLOYMENT = "modeldeploy.io/modeldeployment"
VENV_BIN = Path(sys.executable).parent
MAX_GRACE = 15.0
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
# What a container gets from its image rather than from the pod spec; everything else is the pod's.
BASE_ENV_KEYS = ("HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


@dataclass
class PodProcess:
    """One pod's process and what the runner knows about it (a snapshot from `processes()`)."""

    namespace: str
    pod: str
    uid: str
    modeldeployment: str
    version: str
    env: dict[str, str]
    grace: float
    log_path: Path
    work_dir: Path
    seen_at: float  # monotonic: when the runner first saw the pod Running
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    healthy_at: float | None = None
    restarts: int = 0
    next_start: float = 0.0
    last_exit: int | None = None
    target: str | None = None  # name of the file-SD target while scraped
    target_labels: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # the pod's, as last listed

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.pod)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> str:
        if self.popen is None or self.popen.poll() is not None:
            return "backoff"
        return "healthy" if self.healthy_at is not None else "starting"

    @property
    def startup_seconds(self) -> float | None:
        """Pod seen Running → process answering /health, for the first start."""
        return None if self.healthy_at is None or self.restarts else self.healthy_at - self.seen_at


class EnvNotReady(Exception):
    """A secret or config map the container needs is missing (the kubelet would not start it)."""


# --- the process -------------------------------------------------------------------------------
def new_process(pod: Any, env: dict[str, str], log_dir: Path, work_root: Path) -> PodProcess:
    """The not yet started process for `pod`, whose container environment is `env`."""
    ns, name, uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
    labels = pod.metadata.labels or {}
    grace = pod.spec.termination_grace_period_seconds
    return PodProcess(
        namespace=ns,
        pod=name,
        uid=uid,
        modeldeployment=labels.get(LABEL_MODELDEPLOYMENT, ""),
        version=env.get("MODEL_VERSION", ""),
        env=env,
        grace=min(float(grace if grace is not None else 30), MAX_GRACE),
        log_path=log_dir / f"{ns}_{name}.log",
        work_dir=work_root / ns / f"{name}-{uid[:8]}",
        seen_at=time.monotonic(),
        labels=dict(labels),
    )


def spawn(proc: PodProcess, extra_env: Mapping[str, str]) -> None:
    """Starts (or restarts) the process on a fresh port and a fresh work dir."""
    proc.port = devstack.free_port()
    proc.healthy_at = None
    shutil.rmtree(proc.work_dir, ignore_errors=True)
    (proc.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
    env.update(
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        TMPDIR=str(proc.work_dir / "tmp"),
        VIRTUAL_ENV=str(VENV_BIN.parent),
    )
    env.update(proc.env)
    env.update(extra_env)
    env.update(PORT=str(proc.port), MODELDEPLOY_HOST="127.0.0.1")
    cmd = [
        str(VENV_BIN / "modeldeploy"),
        "serve",
        # Under the stack folder: `stack.py down` kills strays naming it; removed on stop.
        "--model-dir",
        str(proc.work_dir / "model"),
    ]
    with proc.log_path.open("ab") as out:
        out.write(
            f"--- podrunner {time.strftime('%H:%M:%S')}: {proc.namespace}/{proc.pod} "
            f"v{proc.version} on :{proc.port} (start {proc.restarts + 1}) ---\n".encode()
        )
    proc.popen = devstack.spawn(cmd, proc.log_path, env)
    proc.started_at = time.monotonic()
    log.info(
        "%s/%s: started pid %d on %s (v%s, log %s)",
        proc.namespace,
        proc.pod,
        proc.popen.pid,
        proc.url,
        proc.version,
        proc.log_path,
    )


def reap(proc: PodProcess, now: float) -> bool:
    """True when the running process has exited: it is marked for a restart after the back-off."""
    assert proc.popen is not None
    code = proc.popen.poll()
    if code is None:
        return False
    proc.last_exit, proc.popen, proc.healthy_at = code, None, None
    delay = min(BACKOFF_START * 2**proc.restarts, BACKOFF_MAX)
    proc.restarts += 1
    proc.next_start = now + delay
    log.warning(
        "%s/%s: process exited %d; restarting in %.0fs (log %s)\n%s",
        proc.namespace,
        proc.pod,
        code,
        delay,
        proc.log_path,
        tail(proc.log_path, 5),
    )
    return True


def probe(proc: PodProcess) -> None:
    """Marks a started process healthy once it answers /health (the readiness it reports)."""
    if proc.healthy_at is None and _http_ok(f"{proc.url}/health"):
        proc.healthy_at = time.monotonic()
        log.info(
            "%s/%s: healthy %.2fs after the pod was seen Running (%.2fs after spawn)",
            proc.namespace,
            proc.pod,
            proc.healthy_at - proc.seen_at,
            proc.healthy_at - proc.started_at,
        )


def stop_in_background(proc: PodProcess, why: str) -> threading.Thread:
    """Stops the process (SIGTERM to its group, SIGKILL after the grace period) and removes its
    work dir, in a thread that is returned so the caller can wait for it."""
    popen = proc.popen
    log.info("%s/%s: stopping (%s)", proc.namespace, proc.pod, why)

    def stop() -> None:
        if popen is not None:
            devstack.terminate(popen.pid, group=True, timeout=proc.grace)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(5)
        shutil.rmtree(proc.work_dir, ignore_errors=True)

    t = threading.Thread(target=stop, name=f"stop-{proc.pod}", daemon=True)
    t.start()
    return t


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a log, or "" when it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --- env, as the kubelet builds it -------------------------------------------------------------
class KubeletEnv:
    """Builds a container's environment from the pod spec, reading secrets and config maps
    through `core` (a kubernetes CoreV1Api)."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def for_pod(self, pod: Any) -> dict[str, str]:
        """The environment of the pod's serving container."""
        return self.container_env(pod, serving_container(pod))

    def container_env(self, pod: Any, container: Any) -> dict[str, str]:
        ns = pod.metadata.namespace
        env: dict[str, str] = {}
        for src in container.env_from or []:
            prefix = src.prefix or ""
            ref = src.secret_ref or src.config_map_ref
            data = self._ref_data(ns, "secret" if src.secret_ref else "configmap", ref.name)
            if data is None:
                if ref.optional:
                    continue
                raise EnvNotReady(f"envFrom {ref.name} does not exist")
            env.update({prefix + k: v for k, v in data.items()})
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            value = self._value_from(pod, var.value_from)
            if value is not None:
                env[var.name] = value
        return env

    def _value_from(self, pod: Any, src: Any) -> str | None:
        ns = pod.metadata.namespace
        if src.field_ref is not None:
            path = src.field_ref.field_path
            fields = {
                "metadata.name": pod.metadata.name,
                "metadata.namespace": ns,
                "metadata.uid": pod.metadata.uid,
                "spec.nodeName": pod.spec.node_name or "",
                "spec.serviceAccountName": pod.spec.service_account_name or "",
                "status.podIP": "127.0.0.1",
                "status.hostIP": "127.0.0.1",
            }
            m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
            if m:
                return str((getattr(pod.metadata, m.group(1)) or {}).get(m.group(2), ""))
            return str(fields.get(path, ""))
        for kind, ref in (("secret", src.secret_key_ref), ("configmap", src.config_map_key_ref)):
            if ref is None:
                continue
            data = self._ref_data(ns, kind, ref.name)
            if data is None or ref.key not in data:
                if ref.optional:
                    return None
                raise EnvNotReady(f"{kind} {ref.name} key {ref.key} does not exist")
            return data[ref.key]
        return None  # resourceFieldRef: no local meaning

    def _ref_data(self, ns: str, kind: str, name: str) -> dict[str, str] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            if kind == "secret":
                obj = self.core.read_namespaced_secret(name, ns)
                return {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
            cm = self.core.read_namespaced_config_map(name, ns)
            return {k: str(v) for k, v in (cm.data or {}).items()}
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion against the variables defined before; $$ escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, value)
