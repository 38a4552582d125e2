"""Kubelet and Prometheus Operator stand-in for the local stack: real serving processes for the
pods kwok only pretends to run, and Prometheus wired to them the way our monitoring objects ask.

kwok schedules serving pods and reports them Running, but nothing runs. `LocalPods` watches one or
more namespaces (a ~0.5 s list loop in a background thread) and keeps local reality in step:

* **pods → processes.** Every pod labelled `app.kubernetes.io/managed-by=modeldeploy` that is
  Running (and not being deleted) gets `<venv>/bin/modeldeploy serve`, with the env of the pod's
  `model` container (env and envFrom, valueFrom resolved against the API like the kubelet does;
  status.podIP is 127.0.0.1) except PORT (a free loopback port) and MODELDEPLOY_HOST (127.0.0.1).
  The model is downloaded under `<stack>/podrunner/<ns>/<pod>-<uid>/` (so `dev/stack.py down`
  also kills any server a crashed runner left behind); the folder goes with the process. A pod
  that disappears, stops Running or is being deleted has its process stopped (SIGTERM, SIGKILL
  after the grace period, at most 15 s). A process that exits on its own is started again after a
  back-off (1 s doubling to 30 s), like a crash-looping container. Logs: one file per process in
  `<stack>/logs/podrunner/` (or `log_dir`).
* **ServiceMonitor → scrape targets.** A process that answers /health becomes a file-SD target
  (`Stack.add_scrape_target`) when a ServiceMonitor in a watched namespace selects a Service
  whose selector matches the pod. Its labels are what the Prometheus Operator would give
  (namespace, service, pod, container, endpoint, job = the Service name or the `jobLabel`), then
  the endpoint's own `relabelings` applied with Prometheus' semantics (every action the
  Prometheus Operator accepts, on the `__meta_kubernetes_*` labels of the endpoints role:
  `_label_`/`_labelpresent_`, `_annotation_`/`_annotationpresent_` of the pod and the Service),
  so the operator's relabeling is exercised, not re-implemented. The endpoint's `path` becomes
  `__metrics_path__`; its `interval` is ignored (the stack scrapes every 2 s). When the
  monitoring CRDs are not installed, every managed pod is scraped with the labels our
  ServiceMonitor would give.
* **PrometheusRule → rule files.** Each PrometheusRule in a watched namespace becomes
  `<stack>/prometheus/rules/podrunner-<ns>-<name>.yml` (checked with `promtool check rules` when
  it is installed, standing in for the Prometheus Operator's admission webhook: an invalid
  rule is logged and skipped instead of breaking every reload). Prometheus is reloaded only
  when a file changed, once per loop, because a reload empties its Alertmanager list for a few
  seconds (RESEND_DELAY in dev/stack.py).

One runner per namespace: two runners on the same namespace would fight over its targets.

    with LocalPods("my-namespace") as pods:
        ep = pods.wait_for_version("fraud-detector", "2", timeout=60)[0]
        requests.post(f"{ep.url}/invocations", json={...})

CLI (runs until Ctrl-C): python dev/podrunner.py --namespace NS [--namespace NS2 ...]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack as devstack

log = logging.getLogger("podrunner")

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=modeldeploy"
LABEL_MODELDEPLOYMENT = "modeldeploy.io/modeldeployment"
MON_GROUP, MON_VERSION = "monitoring.coreos.com", "v1"
CONTAINER = "model"
VENV_BIN = Path(sys.executable).parent
MAX_GRACE = 15.0
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
# What a container gets from its image rather than from the pod spec; everything else is the pod's.
BASE_ENV_KEYS = ("HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
RULE_GROUP_KEYS = ("name", "interval", "limit", "query_offset", "labels", "rules")
RULE_KEYS = ("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations")


@dataclass(frozen=True)
class Endpoint:
    """A live, healthy serving process standing in for one pod."""

    pod: str
    version: str
    url: str
    namespace: str = ""
    modeldeployment: str = ""


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


class LocalPods:
    """Runs `modeldeploy serve` for the Running serving pods of `namespaces` and wires Prometheus.

    `start()` (or `with`) begins the loop; `close()` stops every process it started and removes its
    targets and rule files."""

    def __init__(
        self,
        namespaces: str | Iterable[str],
        *,
        stack: devstack.Stack | None = None,
        kubeconfig: str | None = None,
        log_dir: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        interval: float = 0.5,
        prometheus: bool | None = None,
    ) -> None:
        from kubernetes import client, config

        self.namespaces = (namespaces,) if isinstance(namespaces, str) else tuple(namespaces)
        if not self.namespaces:
            raise ValueError("LocalPods needs at least one namespace")
        self.stack = stack or devstack.Stack()
        state = self.stack.state()
        kubeconfig = kubeconfig or state.get("cluster", {}).get("kubeconfig")
        if not kubeconfig:
            raise RuntimeError("no cluster in the local stack: run `make stack-up` first")
        api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.log_dir = log_dir or self.stack.logs / "podrunner"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.work_root = self.stack.root / "podrunner"
        self.extra_env = dict(extra_env or {})
        self.interval = interval
        self.prometheus = "prometheus" in state if prometheus is None else prometheus
        self.rules_dir = self.stack.root / "prometheus" / "rules"
        self.targets_dir = self.stack.root / "prometheus" / "targets"
        self.promtool = shutil.which("promtool")
        self.monitoring_crds: bool | None = None  # known after the first loop
        self._procs: dict[tuple[str, str], PodProcess] = {}
        self._rules: dict[str, str] = {}  # rule file name → content written
        self._rules_owned: set[str] = set()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stoppers: list[threading.Thread] = []
        self._errors = 0
        self._warned: set[str] = set()  # ServiceMonitors already warned about
        self.ticks = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalPods:
        if self._thread is None:
            self._adopt_leftovers()
            self._thread = threading.Thread(target=self._run, name="podrunner", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> LocalPods:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the loop and every process; removes the targets and rule files it wrote."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
            self._changed.notify_all()
        for proc in procs:
            self._stop_process(proc, "runner closed", wait=False)
        removed = False
        for name in sorted(self._rules_owned):
            path = self.rules_dir / f"{name}.yml"
            if path.exists():
                path.unlink()
                removed = True
        self._rules.clear()
        self._rules_owned.clear()
        if removed:
            self._reload()
        for t in list(self._stoppers):
            t.join(MAX_GRACE + 5)
        self._stoppers.clear()

    # --- queries ---------------------------------------------------------------------------
    def processes(self, modeldeployment: str | None = None) -> list[PodProcess]:
        with self._lock:
            return [
                p
                for p in self._procs.values()
                if modeldeployment is None or p.modeldeployment == modeldeployment
            ]

    def endpoints(self, modeldeployment: str, namespace: str | None = None) -> list[Endpoint]:
        """Live, healthy processes of one ModelDeployment, sorted by pod name."""
        with self._lock:
            return sorted(
                (
                    Endpoint(p.pod, p.version, p.url, p.namespace, p.modeldeployment)
                    for p in self._procs.values()
                    if p.modeldeployment == modeldeployment
                    and (namespace is None or p.namespace == namespace)
                    and p.state == "healthy"
                ),
                key=lambda e: (e.namespace, e.pod),
            )

    def wait_for_version(
        self,
        modeldeployment: str,
        version: str,
        timeout: float = 60.0,
        *,
        namespace: str | None = None,
        replicas: int = 1,
    ) -> list[Endpoint]:
        """Waits until at least `replicas` healthy processes serve `version` and none of the
        ModelDeployment's processes serves another (the rollout is complete locally)."""

        def done() -> list[Endpoint] | None:
            eps = self.endpoints(modeldeployment, namespace)
            others = [
                p
                for p in self.processes(modeldeployment)
                if p.version != version and (namespace is None or p.namespace == namespace)
            ]
            ok = [e for e in eps if e.version == version]
            return ok if len(ok) >= replicas and not others else None

        found: list[Endpoint] = self.wait(
            done, timeout, f"{modeldeployment}: {replicas} healthy process(es) of v{version} only"
        )
        return found

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Re-evaluates `check` after every loop until it is truthy; raises TimeoutError with
        what runs (and the log tail of any process that exited) otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = check()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    break
                self._changed.wait(min(left, 1.0))
        raise TimeoutError(f"{what}: not within {timeout:.0f}s\n{self.describe()}")

    def describe(self) -> str:
        lines = []
        for p in self.processes():
            lines.append(
                f"  {p.namespace}/{p.pod} v{p.version} {p.state} port={p.port} "
                f"restarts={p.restarts} last_exit={p.last_exit} log={p.log_path}"
            )
            if p.state != "healthy":
                lines += ["    " + line for line in _tail(p.log_path, 15).splitlines()]
        return "\n".join(lines) or "  (no processes)"

    # --- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        next_list = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_list:
                    next_list = now + self.interval
                    self._sync()
                self._check_processes()
                self._errors = 0
            except Exception:
                self._errors += 1
                if self._errors in (1, 10) or self._errors % 100 == 0:
                    log.exception("podrunner loop failed (%d in a row); retrying", self._errors)
            with self._changed:
                self.ticks += 1
                self._changed.notify_all()
            starting = any(p.state == "starting" for p in self.processes())
            # Probe starting processes often so the measured start-up time is not the loop's.
            self._stop.wait(0.05 if starting else min(self.interval, max(0.0, next_list - now)))

    def _sync(self) -> None:
        pods: list[Any] = []
        monitors: list[dict[str, Any]] | None = []
        services: list[Any] = []
        rules: dict[str, dict[str, Any]] | None = {}
        for ns in self.namespaces:
            pods += self.core.list_namespaced_pod(ns, label_selector=MANAGED_SELECTOR).items
            sms = self._list_custom(ns, "servicemonitors")
            prs = self._list_custom(ns, "prometheusrules")
            if sms is None or prs is None:
                monitors = rules = None
            if monitors is not None and sms is not None:
                monitors += sms
                services += self.core.list_namespaced_service(ns).items
            if rules is not None and prs is not None:
                for pr in prs:
                    rules[f"podrunner-{ns}-{pr['metadata']['name']}"] = pr
        crds = monitors is not None
        if crds != self.monitoring_crds:
            log.info(
                "monitoring CRDs %s",
                "installed: scraping what ServiceMonitors select, PrometheusRules → rule files"
                if crds
                else "not installed: scraping every managed pod, no rule files",
            )
            self.monitoring_crds = crds
        self._sync_pods(pods)
        self._sync_targets(pods, monitors, services)
        if self.prometheus:
            self._sync_rules(rules or {})

    def _list_custom(self, ns: str, plural: str) -> list[dict[str, Any]] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            res: Any = self.custom.list_namespaced_custom_object(MON_GROUP, MON_VERSION, ns, plural)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return list(res.get("items", []))

    # --- pods → processes ------------------------------------------------------------------
    def _sync_pods(self, pods: list[Any]) -> None:
        wanted = {
            (p.metadata.namespace, p.metadata.name): p
            for p in pods
            if p.status
            and p.status.phase == "Running"
            and p.metadata.deletion_timestamp is None
            and p.spec.containers
        }
        with self._lock:
            gone = [
                proc
                for key, proc in self._procs.items()
                if key not in wanted or wanted[key].metadata.uid != proc.uid
            ]
            for proc in gone:
                del self._procs[proc.key]
        for proc in gone:
            pod = wanted.get(proc.key)
            self._stop_process(proc, "pod replaced" if pod else "pod gone or not Running")
        for key, pod in wanted.items():
            with self._lock:
                if key in self._procs:
                    continue
            try:
                proc = self._new_process(pod)
            except EnvNotReady as exc:
                log.warning("%s/%s: not starting yet: %s", *key, exc)
                continue
            with self._lock:
                self._procs[key] = proc
            self._spawn(proc)

    def _new_process(self, pod: Any) -> PodProcess:
        ns, name, uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
        container = next((c for c in pod.spec.containers if c.name == CONTAINER), None)
        container = container or pod.spec.containers[0]
        env = self._container_env(pod, container)
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
            log_path=self.log_dir / f"{ns}_{name}.log",
            work_dir=self.work_root / ns / f"{name}-{uid[:8]}",
            seen_at=time.monotonic(),
        )

    def _spawn(self, proc: PodProcess) -> None:
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
        env.update(self.extra_env)
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

    def _check_processes(self) -> None:
        now = time.monotonic()
        for proc in self.processes():
            if proc.popen is None:
                if now >= proc.next_start:
                    with self._lock:
                        if self._procs.get(proc.key) is proc:
                            self._spawn(proc)
                continue
            code = proc.popen.poll()
            if code is not None:
                self._drop_target(proc)
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
                    _tail(proc.log_path, 5),
                )
            elif proc.healthy_at is None and _http_ok(f"{proc.url}/health"):
                proc.healthy_at = time.monotonic()
                log.info(
                    "%s/%s: healthy %.2fs after the pod was seen Running (%.2fs after spawn)",
                    proc.namespace,
                    proc.pod,
                    proc.healthy_at - proc.seen_at,
                    proc.healthy_at - proc.started_at,
                )

    def _stop_process(self, proc: PodProcess, why: str, wait: bool = False) -> None:
        self._drop_target(proc)
        popen = proc.popen
        log.info("%s/%s: stopping (%s)", proc.namespace, proc.pod, why)

        def stop() -> None:
            if popen is not None:
                devstack.terminate(popen.pid, group=True, timeout=proc.grace)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(5)
            shutil.rmtree(proc.work_dir, ignore_errors=True)

        if wait:
            stop()
            return
        t = threading.Thread(target=stop, name=f"stop-{proc.pod}", daemon=True)
        t.start()
        self._stoppers = [s for s in self._stoppers if s.is_alive()] + [t]

    # --- env, as the kubelet builds it -----------------------------------------------------
    def _container_env(self, pod: Any, container: Any) -> dict[str, str]:
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
                env[var.name] = _expand(var.value or "", env)
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

    # --- ServiceMonitor → scrape targets ---------------------------------------------------
    def _sync_targets(
        self, pods: list[Any], monitors: list[dict[str, Any]] | None, services: list[Any]
    ) -> None:
        by_key = {(p.metadata.namespace, p.metadata.name): p for p in pods}
        for proc in self.processes():
            pod = by_key.get(proc.key)
            labels = None
            if pod is not None and proc.state == "healthy":
                labels = (
                    self._default_target_labels(pod, proc)
                    if monitors is None
                    else self._monitored_labels(pod, proc, monitors, services)
                )
            if labels is None:
                self._drop_target(proc)
            elif labels != proc.target_labels or proc.target is None:
                name = f"podrunner-{proc.namespace}-{proc.pod}"
                if self.prometheus:
                    self.stack.add_scrape_target(name, f"127.0.0.1:{proc.port}", labels)
                proc.target, proc.target_labels = name, labels
                log.info("%s/%s: scraped as %s", proc.namespace, proc.pod, _public(labels))

    def _default_target_labels(self, pod: Any, proc: PodProcess) -> dict[str, str]:
        """What our ServiceMonitor gives (Service named after the ModelDeployment)."""
        md = proc.modeldeployment
        return {
            "namespace": proc.namespace,
            "service": md,
            "pod": proc.pod,
            "container": CONTAINER,
            "endpoint": "http",
            "job": md,
            "modeldeployment": md,
        }

    def _monitored_labels(
        self, pod: Any, proc: PodProcess, monitors: list[dict[str, Any]], services: list[Any]
    ) -> dict[str, str] | None:
        labels = monitored_target_labels(pod, f"127.0.0.1:{proc.port}", monitors, services)
        for sm in monitors:
            for ep in (sm.get("spec") or {}).get("endpoints") or []:
                if ep.get("metricRelabelings") and sm["metadata"]["name"] not in self._warned:
                    self._warned.add(sm["metadata"]["name"])
                    log.warning(
                        "%s: metricRelabelings are not applied locally", sm["metadata"]["name"]
                    )
        return labels

    def _drop_target(self, proc: PodProcess) -> None:
        if proc.target is not None:
            self.stack.remove_scrape_target(proc.target)
            proc.target, proc.target_labels = None, {}

    # --- PrometheusRule → rule files -------------------------------------------------------
    def _sync_rules(self, rules: dict[str, dict[str, Any]]) -> None:
        changed = False
        for name, pr in rules.items():
            groups = [
                {k: g[k] for k in RULE_GROUP_KEYS if k in g}
                | {"rules": [{k: r[k] for k in RULE_KEYS if k in r} for r in g.get("rules") or []]}
                for g in (pr.get("spec") or {}).get("groups") or []
            ]
            content = yaml.safe_dump({"groups": groups}, sort_keys=False)
            if self._rules.get(name) == content:
                continue
            problem = self._check_rules(content)
            if problem:
                if self._rules.get(name) != f"invalid:{content}":
                    log.error("PrometheusRule %s is invalid, not loaded: %s", name, problem)
                self._rules[name] = f"invalid:{content}"
                self._remove_rule_file(name)
                continue
            path = self.rules_dir / f"{name}.yml"
            self._rules_owned.add(name)
            self._rules[name] = content
            if path.exists() and path.read_text() == content:
                continue  # written by an earlier runner, already loaded
            self.rules_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(content)
            tmp.replace(path)
            changed = True
            log.info("PrometheusRule %s → %s", name, path)
        for name in [n for n in self._rules if n not in rules]:
            del self._rules[name]
            changed |= self._remove_rule_file(name)
            self._rules_owned.discard(name)
            log.info("PrometheusRule %s removed", name)
        if changed:
            self._reload()

    def _remove_rule_file(self, name: str) -> bool:
        path = self.rules_dir / f"{name}.yml"
        if path.exists():
            path.unlink()
            return True
        return False

    def _check_rules(self, content: str) -> str | None:
        if not self.promtool:
            return None
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as fh:
            fh.write(content)
            fh.flush()
            res = subprocess.run(
                [self.promtool, "check", "rules", fh.name],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        return None if res.returncode == 0 else (res.stderr or res.stdout).strip()

    def _reload(self) -> None:
        if not self.prometheus:
            return
        try:
            self.stack.reload("prometheus")
        except (OSError, urllib.error.URLError, KeyError) as exc:
            log.error("Prometheus reload failed: %s", exc)

    def _adopt_leftovers(self) -> None:
        """Targets and rule files a crashed runner left for these namespaces: targets go (their
        processes are gone), rule files are compared so an unchanged one costs no reload."""
        for ns in self.namespaces:
            for path in self.targets_dir.glob(f"podrunner-{ns}-*.json"):
                path.unlink(missing_ok=True)
            for path in self.rules_dir.glob(f"podrunner-{ns}-*.yml"):
                self._rules[path.stem] = path.read_text()
                self._rules_owned.add(path.stem)

    # --- stats -----------------------------------------------------------------------------
    def startup_seconds(self) -> dict[str, float]:
        """Per pod (first start only): seconds from seen Running to answering /health."""
        out = {}
        for p in self.processes():
            s = p.startup_seconds
            if s is not None:
                out[f"{p.namespace}/{p.pod}"] = s
        return out


# --- helpers -------------------------------------------------------------------------------
def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion against the variables defined before; $$ escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, value)


def _sanitize(name: str) -> str:
    """Kubernetes SD's label-name sanitising: anything but [a-zA-Z0-9_] becomes `_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _public(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if not k.startswith("__"))


def _subset(small: Mapping[str, str], big: Mapping[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions, ANDed) against labels; the empty
    selector selects everything, as a ServiceMonitor's `selector: {}` does."""
    if not _subset(selector.get("matchLabels") or {}, labels):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
        if not ok:
            return False
    return True


def sd_meta_labels(
    kind: str, labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None
) -> dict[str, str]:
    """Prometheus' Kubernetes service discovery labels for one object's labels and annotations
    (`kind` is `pod` or `service`): `__meta_kubernetes_<kind>_label_<name>` and
    `..._annotation_<name>` carry the value, `..._labelpresent_<name>` and
    `..._annotationpresent_<name>` are "true"; names are sanitised."""
    out: dict[str, str] = {}
    for what, items in (("label", labels), ("annotation", annotations)):
        for key, value in (items or {}).items():
            name = _sanitize(key)
            out[f"__meta_kubernetes_{kind}_{what}_{name}"] = value
            out[f"__meta_kubernetes_{kind}_{what}present_{name}"] = "true"
    return out


def monitored_target_labels(
    pod: Any, address: str, monitors: list[dict[str, Any]], services: list[Any]
) -> dict[str, str] | None:
    """The first ServiceMonitor endpoint that reaches `pod` through a Service, relabeled the way
    the Prometheus Operator's generated scrape config would; None when nothing selects it.

    A ServiceMonitor reaches a pod when its `namespaceSelector` (`any`, `matchNames`, or by
    default its own namespace) covers the pod's namespace, its `selector` selects a Service there
    and that Service's (non-empty) selector matches the pod's labels. (The real thing makes one
    target per matching endpoint; locally a process has one set of labels.)"""
    namespace = pod.metadata.namespace
    pod_labels = pod.metadata.labels or {}
    for sm in sorted(monitors, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"])):
        spec = sm.get("spec") or {}
        nss = spec.get("namespaceSelector") or {}
        if not nss.get("any") and namespace not in (
            nss.get("matchNames") or [sm["metadata"]["namespace"]]
        ):
            continue
        for svc in sorted(services, key=lambda s: str(s.metadata.name)):
            svc_sel = svc.spec.selector or {}
            if (
                svc.metadata.namespace != namespace
                or not svc_sel
                or not _subset(svc_sel, pod_labels)
                or not _selects(spec.get("selector") or {}, svc.metadata.labels or {})
            ):
                continue
            for ep in spec.get("endpoints") or []:
                labels = endpoint_target_labels(pod, address, sm, svc, ep)
                if labels is not None:
                    return labels
    return None


def endpoint_target_labels(
    pod: Any, address: str, sm: dict[str, Any], svc: Any, ep: dict[str, Any]
) -> dict[str, str] | None:
    """One ServiceMonitor endpoint's target labels for `pod` behind `svc`: the `__meta_kubernetes_*`
    labels of the endpoints role, the Prometheus Operator's own labels (namespace, service, pod,
    container, endpoint, job), then the endpoint's `relabelings`. None when the endpoint names a
    port the Service does not have, or a keep/drop removes the target."""
    port_name = ep.get("port")
    if port_name and port_name not in {p.name for p in svc.spec.ports or []}:
        return None
    container = next(
        (c for c in pod.spec.containers if c.name == CONTAINER), pod.spec.containers[0]
    )
    meta = {
        "__address__": address,
        "__metrics_path__": ep.get("path") or "/metrics",
        "__meta_kubernetes_namespace": pod.metadata.namespace,
        "__meta_kubernetes_service_name": svc.metadata.name,
        "__meta_kubernetes_pod_name": pod.metadata.name,
        "__meta_kubernetes_pod_container_name": container.name,
        "__meta_kubernetes_pod_node_name": pod.spec.node_name or "",
        "__meta_kubernetes_pod_ip": "127.0.0.1",
        "__meta_kubernetes_pod_uid": pod.metadata.uid or "",
        "__meta_kubernetes_endpoint_port_name": port_name or "",
        **sd_meta_labels("pod", pod.metadata.labels, pod.metadata.annotations),
        **sd_meta_labels("service", svc.metadata.labels, svc.metadata.annotations),
    }
    # The Operator's generated relabelings: job is the Service name unless the Service has a
    # non-empty value for the ServiceMonitor's jobLabel.
    job_label = (sm.get("spec") or {}).get("jobLabel")
    job = (svc.metadata.labels or {}).get(job_label, "") if job_label else ""
    meta.update(
        namespace=pod.metadata.namespace,
        service=svc.metadata.name,
        pod=pod.metadata.name,
        container=container.name,
        job=job or svc.metadata.name,
    )
    if port_name:
        meta["endpoint"] = port_name
    relabeled = relabel(meta, ep.get("relabelings") or [])
    if relabeled is None:
        return None
    out = {k: v for k, v in relabeled.items() if not k.startswith("__") and v != ""}
    if relabeled.get("__metrics_path__", "/metrics") != "/metrics":
        out["__metrics_path__"] = relabeled["__metrics_path__"]
    return out


_TEMPLATE_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+)|\$)")


def expand_template(template: str, match: re.Match[str]) -> str:
    """Go's `Regexp.Expand`, which Prometheus uses for `replacement` and `targetLabel`: `$1`,
    `${1}`, `$name`, `${name}`; `$$` is a literal `$`; `$name` takes the longest run of word
    characters (`$1x` is the group named `1x`); a group that does not exist or did not take part
    expands to nothing; a `$` not followed by a name stays as it is."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        try:
            value = match.group(int(name) if name.isdigit() else name)
        except IndexError:  # no such group
            return ""
        return value or ""

    return _TEMPLATE_VAR.sub(sub, template)


def _hashmod(value: str, modulus: int) -> int:
    """Prometheus' hashmod: the low 64 bits of the value's MD5, big-endian, modulo `modulus`."""
    digest = hashlib.md5(value.encode()).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def relabel(labels: Mapping[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus relabeling of one target with the Prometheus Operator's field names
    (`sourceLabels`, `separator`, `targetLabel`, `regex`, `modulus`, `replacement`, `action`;
    actions in either case); None when a keep, drop, keepequal or dropequal removes the target.

    Defaults as Prometheus': action replace, separator `;`, regex `(.*)` anchored at both ends,
    replacement `$1`. A label with an empty value is an absent label."""
    out = dict(labels)
    for cfg in configs:
        action = str(cfg.get("action", "replace")).lower()
        regex = re.compile(f"^(?:{cfg.get('regex', '(.*)')})$")
        source = str(cfg.get("separator", ";")).join(
            out.get(name, "") for name in cfg.get("sourceLabels") or []
        )
        target = str(cfg.get("targetLabel", ""))
        replacement = str(cfg.get("replacement", "$1"))
        if action == "replace":
            m = regex.match(source)
            if m is None:
                continue  # no match, no change
            name = expand_template(target, m)
            value = expand_template(replacement, m)
            if not _LABEL_NAME.fullmatch(name) or not value:
                out.pop(target, None)
            else:
                out[name] = value
        elif action in ("lowercase", "uppercase"):
            out[target] = source.lower() if action == "lowercase" else source.upper()
        elif action == "hashmod":
            out[target] = str(_hashmod(source, int(cfg["modulus"])))
        elif action in ("keep", "drop"):
            if bool(regex.match(source)) != (action == "keep"):
                return None
        elif action in ("keepequal", "dropequal"):
            if (out.get(target, "") == source) != (action == "keepequal"):
                return None
        elif action == "labelmap":
            for name, value in list(out.items()):
                m = regex.match(name)
                if m:
                    out[expand_template(replacement, m)] = value
        elif action in ("labeldrop", "labelkeep"):
            drop = action == "labeldrop"
            out = {k: v for k, v in out.items() if bool(regex.match(k)) != drop}
        else:
            raise ValueError(f"relabel action {action!r} is not supported locally")
    return {k: v for k, v in out.items() if v != ""}


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run real `modeldeploy serve` processes for the serving pods kwok reports "
        "Running, scrape them with the local Prometheus and load their PrometheusRules. "
        "Runs until Ctrl-C."
    )
    parser.add_argument(
        "--namespace", "-n", action="append", required=True, help="namespace to follow (repeat)"
    )
    parser.add_argument("--log-dir", type=Path, help="process logs (default .stack/logs/podrunner)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="[podrunner %(asctime)s] %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        pods = LocalPods(args.namespace, log_dir=args.log_dir).start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("following %s; Ctrl-C stops every process it started", ", ".join(args.namespace))
    try:
        while not stop.wait(5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping")
        pods.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
