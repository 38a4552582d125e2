"""`modeldeploy serve` beside `mlflow models serve` and MLServer: same models, same load, one run.

Two models, each saved once for every server: iris LogisticRegression (4 features) and a
30-feature GradientBoostingClassifier, both with a drift baseline in the MLflow model directory.
One row per request: MLflow's `dataframe_split` for MLflow and modeldeploy, the same row as one
V2 tensor for MLServer. All servers run together on loopback; the load generator (`wrk -t1`)
drives each in turn at 1, 8 and 64 connections, in rounds, the order reversed every other round,
so slow drifts of a shared machine hit every configuration alike and every point is paired with
`mlflow models serve` of the same round and connection count.

Configurations:
  mlflow            mlflow models serve, MLFLOW_MODELS_WORKERS=1 (the baseline of the ratios;
                    MLflow's default here is 2 workers, one per core)
  mlserver          MLServer + mlserver-sklearn (its defaults: 1 inference worker process, no
                    adaptive batching), from a venv of its own that this script creates under
                    ~/.cache/modeldeploy (MLSERVER_VERSION in dev/versions.env); REST, gRPC and
                    metrics bound to 127.0.0.1
  md-slow           modeldeploy serve, everything on (drift, confidence on every request,
                    feedback, metrics, access log), fast path and batching off
  md-fast           the same with the fast path on, batching off
  md-batch          the same with the fast path and batching on (the defaults)
A configuration whose flags this `modeldeploy serve` does not know is skipped, with a note.

Measured per point: throughput, client p50/p99, CPU per request (user+system of the server's
process group); at one connection the server-side p50 from modeldeploy's own latency histogram;
per server the resident memory of its process group after warm-up and its peak. `--smoke` runs
every configuration once for a second (no figures written; without wrk a small Python load loop
stands in) and fails when any server fails, errs or answers differently from the others.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.client
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
VERSIONS_ENV = REPO / "dev" / "versions.env"
CACHE = Path.home() / ".cache" / "modeldeploy"
BASELINE = "mlflow"
GOALS = {8: 5.0, 64: 15.0}  # issue 14: throughput vs mlflow models serve
GOAL_SERVER_P50_MS = 1.0

Point = dict[str, float]


# -- models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One model saved for every server, and the one-row request each of them gets."""

    name: str
    title: str
    features: list[str]
    row: list[float]
    mlflow_dir: Path
    joblib_file: Path

    def mlflow_body(self) -> bytes:
        return json.dumps(
            {"dataframe_split": {"columns": self.features, "data": [self.row]}}
        ).encode()

    def v2_body(self) -> bytes:
        tensor = {
            "name": "input-0",
            "shape": [1, len(self.row)],
            "datatype": "FP64",
            "data": self.row,
        }
        return json.dumps({"inputs": [tensor]}).encode()


def _save(
    name: str, title: str, model: Any, X: Any, y: Any, root: Path, trusted: Sequence[str] = ()
) -> Workload:
    import joblib
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    from modeldeploy.tracking import build_drift_baseline

    path = root / name
    signature = infer_signature(X, model.predict(X))
    extra = {"skops_trusted_types": list(trusted)} if trusted else {}
    # Requirements named: MLflow would otherwise load the model in a subprocess to infer them.
    reqs = [f"scikit-learn=={sklearn.__version__}"]
    mlflow.sklearn.save_model(model, str(path), signature=signature, pip_requirements=reqs, **extra)
    (path / "drift_baseline.json").write_text(build_drift_baseline(X, target=y).to_json())
    jl = root / f"{name}-mlserver" / "model.joblib"
    jl.parent.mkdir()
    joblib.dump(model, jl)
    row = [float(v) for v in X.iloc[0]]
    return Workload(name, title, list(X.columns), row, path, jl)


def make_models(root: Path, which: Sequence[str]) -> list[Workload]:
    import pandas as pd
    from sklearn.datasets import load_iris, make_classification
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    out = []
    if "iris" in which:
        X, y = load_iris(return_X_y=True, as_frame=True)
        X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        iris = LogisticRegression(max_iter=500).fit(X, y)
        out.append(_save("iris", "iris LogisticRegression, 4 features", iris, X, y, root))
    if "wide" in which:
        Xw, yw = make_classification(
            n_samples=2000, n_features=30, n_informative=12, random_state=0
        )
        Xw = pd.DataFrame(Xw, columns=[f"f{i}" for i in range(30)])
        gbc = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(Xw, yw)
        title = "GradientBoostingClassifier, 30 features, 100 trees"
        out.append(_save("wide", title, gbc, Xw, yw, root, trusted=["sklearn.tree._tree.Tree"]))
    return out


# -- servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # mlflow | mlserver | modeldeploy
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # flags this config means: skipped when serve lacks one
    optional: tuple[str, ...] = ()  # flags dropped (with their value) when serve lacks them


EVERYTHING_ON = ("--drift", "true", "--confidence", "true", "--confidence-sample", "1",
                 "--feedback", "true", "--log-level", "INFO")  # fmt: skip
CONFIGS = [
    Config("mlflow", "mlflow", env={"MLFLOW_MODELS_WORKERS": "1"}),
    Config("mlserver", "mlserver"),
    Config(
        "md-slow",
        "modeldeploy",
        (*EVERYTHING_ON, "--fast-path", "false", "--batch-max-size", "1"),
        optional=("--fast-path", "--batch-max-size", "--confidence-sample"),
    ),
    Config(
        "md-fast",
        "modeldeploy",
        (*EVERYTHING_ON, "--batch-max-size", "1"),
        requires=("--fast-path", "--batch-max-size"),
        optional=("--confidence-sample",),
    ),
    Config(
        "md-batch",
        "modeldeploy",
        EVERYTHING_ON,
        requires=("--fast-path", "--batch-max-size"),
        optional=("--confidence-sample",),
    ),
]


@dataclass
class Server:
    config: str
    model: str
    proc: subprocess.Popen[bytes]
    port: int
    path: str
    body: bytes
    log: Path
    answer: str = ""
    memory: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_flags() -> str:
    """`modeldeploy serve --help`, to tell which flags this tree's runtime has."""
    return subprocess.run(
        [str(VENV_BIN / "modeldeploy"), "serve", "--help"], capture_output=True, text=True
    ).stdout


def resolve_args(cfg: Config, help_text: str) -> tuple[list[str], str | None]:
    """The config's arguments for this runtime, or a reason to skip it."""
    known = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    missing = [f for f in cfg.requires if f not in known]
    if missing:
        return [], f"this `modeldeploy serve` has no {', '.join(missing)}"
    args, it = [], iter(cfg.args)
    for a in it:
        if a.startswith("--") and a not in known:
            if a in cfg.optional:
                next(it, None)
                continue
            return [], f"this `modeldeploy serve` has no {a}"
        args.append(a)
    return args, None


def _env(extra: dict[str, str]) -> dict[str, str]:
    path = f"{VENV_BIN}:{os.environ.get('PATH', '')}"
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": path, **extra}


def _spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> Any:
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)  # fmt: skip


def start(cfg: Config, w: Workload, args: list[str], tmp: Path, mlserver: Path | None) -> Server:
    port = free_port()
    log = tmp / f"{cfg.name}-{w.name}.log"
    if cfg.kind == "mlflow":
        cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(w.mlflow_dir),
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
        proc = _spawn(cmd, log, _env(cfg.env))
        return Server(cfg.name, w.name, proc, port, "/invocations", w.mlflow_body(), log)
    if cfg.kind == "mlserver":
        assert mlserver is not None
        repo = mlserver_repository(w, port, tmp)
        env = {k: v for k, v in _env(cfg.env).items() if k != "PYTHONPATH"}
        proc = _spawn([str(mlserver / "mlserver"), "start", str(repo)], log, env, cwd=repo)
        path = f"/v2/models/{w.name}/infer"
        return Server(cfg.name, w.name, proc, port, path, w.v2_body(), log)
    cmd = [str(VENV_BIN / "modeldeploy"), "serve", "--model-uri", str(w.mlflow_dir),
           "--host", "127.0.0.1", "--port", str(port), "--model-name", w.name, *args]  # fmt: skip
    proc = _spawn(cmd, log, _env(cfg.env))
    return Server(cfg.name, w.name, proc, port, "/invocations", w.mlflow_body(), log)


def mlserver_repository(w: Workload, port: int, tmp: Path) -> Path:
    """An MLServer model repository: settings binding REST, gRPC and metrics to loopback."""
    repo = tmp / f"mlserver-{w.name}"
    (repo / w.name).mkdir(parents=True)
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                "metrics_port": free_port(), "load_models_at_startup": True}  # fmt: skip
    (repo / "settings.json").write_text(json.dumps(settings))
    model = {"name": w.name, "implementation": "mlserver_sklearn.SKLearnModel",
             "parameters": {"uri": str(w.joblib_file), "version": "1"}}  # fmt: skip
    (repo / w.name / "model-settings.json").write_text(json.dumps(model))
    return repo


def mlserver_version() -> str:
    """MLSERVER_VERSION from dev/versions.env, the one place versions are pinned."""
    for line in VERSIONS_ENV.read_text().splitlines():
        if line.startswith("MLSERVER_VERSION="):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"MLSERVER_VERSION is missing from {VERSIONS_ENV}")


def mlserver_venv(install: bool) -> tuple[Path | None, str]:
    """The bin directory of MLServer's own venv (never this one: it would change our dependency
    set), created when `install`; or None and why not. scikit-learn is pinned to ours, so that
    both load the same pickled model."""
    import sklearn

    version = mlserver_version()
    venv = CACHE / f"mlserver-venv-{version}"
    bin_ = venv / "bin"
    # uvloop 0.22 made asyncio.get_event_loop() raise outside a running loop, which kills
    # MLServer 1.7's inference workers at start ("There is no current event loop").
    pins = [f"mlserver=={version}", f"mlserver-sklearn=={version}",
            f"scikit-learn=={sklearn.__version__}", "uvloop<0.22"]  # fmt: skip
    marker = venv / ".modeldeploy-pins"
    if marker.exists() and marker.read_text() == " ".join(pins):
        return bin_, f"MLServer {version}"
    if not install:
        return None, f"MLServer {version} is not installed in {venv} (run without --smoke once)"
    print(f"installing {' '.join(pins)} into {venv}", file=sys.stderr)
    base = Path(sys.base_prefix) / "bin" / "python3"
    steps = [[str(base), "-m", "venv", "--clear", str(venv)],
             [str(bin_ / "pip"), "install", "-q", *pins]]  # fmt: skip
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = " ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
            return (
                None,
                f"MLServer {version} did not install on Python {platform.python_version()}: {tail}",
            )
    marker.write_text(" ".join(pins))
    return bin_, f"MLServer {version}"


def post(port: int, path: str, body: bytes, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answer(s: Server, raw: bytes) -> str:
    """The predicted class, spelled the same for every server."""
    doc = json.loads(raw)
    values = doc["outputs"][0]["data"] if "outputs" in doc else doc["predictions"]
    return json.dumps([str(v) for v in values])


def wait_ready(s: Server, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            tail = s.log.read_text(errors="replace")[-1500:]
            raise SystemExit(f"{s.config} ({s.model}) exited with {s.proc.returncode}:\n{tail}")
        try:
            status, raw = post(s.port, s.path, s.body, timeout=5)
        except OSError:
            time.sleep(0.3)
            continue
        if status == 200:
            s.answer = answer(s, raw)
            return
        time.sleep(0.3)  # MLServer answers 404/400 until its model is loaded
    raise SystemExit(f"{s.config} ({s.model}) not ready after {timeout:.0f} s")


def stop_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every server's process group, then SIGKILL those still there after 30 s."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# -- measuring -------------------------------------------------------------------------------


def _group(pgid: int) -> list[Path]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "pid (comm)": state ppid pgrp ...
            out.append(stat.parent)
    return out


def tree_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in a process group (the server and its workers)."""
    total = 0
    for proc in _group(pgid):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def group_memory_mb(pgid: int) -> dict[str, float]:
    """Resident memory of a process group now and the sum of its processes' peaks, in MB."""
    rss = peak = 0
    for proc in _group(pgid):
        try:
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1])
    return {"rss_mb": rss / 1024, "peak_mb": peak / 1024}


def wrk_script(root: Path, s: Server) -> Path:
    """The wrk Lua script that POSTs the server's request body."""
    script = root / f"post-{s.config}-{s.model}.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{s.body.decode()}'\n"
    )
    return script


def wrk(port: int, path: str, connections: int, seconds: float, script: Path) -> Point:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "60s",
         "-s", str(script), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors against :{port}{path}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rps": rps, "requests": requests, "p50_ms": pct("50"), "p99_ms": pct("99")}


def pyload(port: int, path: str, body: bytes, connections: int, seconds: float) -> Point:
    """A small stand-in for wrk (smoke mode without wrk): keep-alive connections in threads."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        try:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    failures.append(f"HTTP {resp.status}")
                    return
                mine.append(time.perf_counter() - t0)
        except OSError as exc:
            failures.append(repr(exc))
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if failures or not latencies:
        raise SystemExit(f"load against :{port}{path} failed: {failures[:3] or 'no answers'}")
    ms = sorted(1000 * x for x in latencies)
    return {"rps": len(ms) / elapsed, "requests": len(ms), "p50_ms": ms[len(ms) // 2],
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))]}  # fmt: skip


def latency_buckets(port: int) -> dict[float, float] | None:
    """modeldeploy's prediction latency histogram (cumulative counts by upper bound)."""
    from prometheus_client.parser import text_string_to_metric_families

    from modeldeploy import names

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[float, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != names.PREDICTION_LATENCY:
            continue
        for sample in fam.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                out[le] = out.get(le, 0.0) + sample.value
    return out or None


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Prometheus' histogram_quantile over the increase between two scrapes, in ms."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    rank, lower, prev = q * total, 0.0, 0.0
    for edge, cum in zip(edges, counts, strict=True):
        if cum >= rank:
            if edge == float("inf"):
                return 1000 * lower
            return 1000 * (lower + (edge - lower) * (rank - prev) / max(cum - prev, 1e-9))
        lower, prev = edge, cum
    return 1000 * lower


def share_below(limit_s: float, before: dict[float, float], after: dict[float, float]) -> float:
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    if limit_s not in after or total <= 0:
        return float("nan")
    return (after[limit_s] - before.get(limit_s, 0.0)) / total


def measure(s: Server, conns: int, seconds: float, script: Path | None) -> Point:
    md = s.config.startswith("md-")
    before = latency_buckets(s.port) if md else None
    cpu0 = tree_cpu_seconds(s.proc.pid)
    if script is not None:
        p = wrk(s.port, s.path, conns, seconds, script)
    else:
        p = pyload(s.port, s.path, s.body, conns, seconds)
    p["cpu_ms"] = 1000 * (tree_cpu_seconds(s.proc.pid) - cpu0) / max(p["requests"], 1)
    if before is not None:
        after = latency_buckets(s.port)
        if after:
            p["server_p50_ms"] = histogram_quantile(0.5, before, after)
            p["server_le_1ms"] = share_below(0.001, before, after)
    return p


# -- profile ---------------------------------------------------------------------------------


LIBRARIES = ("modeldeploy/", "mlflow/", "sklearn/", "pandas/core/frame.py")
# Where a thread waits rather than works: left out of the shares.
WAITS = ("'poll' of 'select.epoll'", "'acquire' of '_thread.lock'", "'get' of '_queue.SimpleQueue'")


class ThreadProfiles:
    """cProfile in every thread, not only the one that enables it (3.11 has no
    setprofile_all_threads): a profile hook in each new thread swaps itself for a cProfile
    profiler of that thread once `active` is set, so the prediction threads are measured too."""

    def __init__(self) -> None:
        self.active = False
        self.profiles: list[cProfile.Profile] = []

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if self.active:
            prof = cProfile.Profile()
            self.profiles.append(prof)
            prof.enable()

    def stats(self) -> pstats.Stats:
        stats = pstats.Stats(self.profiles[0])
        for prof in self.profiles[1:]:
            stats.add(prof)
        return stats


def profile_child(spec: str) -> int:
    """Runs in a subprocess: `n` requests through the ASGI app of `modeldeploy serve` (everything
    but uvicorn's HTTP parsing), `concurrency` at a time, under cProfile in every thread; prints
    the functions' shares of the busy time as JSON."""
    opts = json.loads(spec)
    threads = ThreadProfiles()
    threading.setprofile(threads.hook)  # threads started from here on (the prediction pool)
    from modeldeploy.serving import logs
    from modeldeploy.serving.app import ServingApp
    from modeldeploy.serving.config import parse

    config = parse(["--model-uri", opts["model"], "--model-name", "bench", *opts["args"]])
    logs.configure(config.log_level)
    app = ServingApp(config)
    body = opts["body"].encode()

    async def one() -> None:
        scope = {"type": "http", "method": "POST", "path": "/invocations", "query_string": b"",
                 "http_version": "1.1", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status: list[int] = []

        async def send(msg: MutableMapping[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status.append(msg["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise SystemExit(f"profiled request answered {status}")

    async def main() -> pstats.Stats:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await queue.put({"type": "lifespan.startup"})

        async def lsend(msg: MutableMapping[str, Any]) -> None:
            pass

        life = asyncio.create_task(app({"type": "lifespan"}, queue.get, lsend))
        while app.runtime is None:
            await asyncio.sleep(0.05)
        for _ in range(min(200, opts["n"])):  # warm-up
            await one()
        threads.active = True
        main_prof = cProfile.Profile()
        threads.profiles.append(main_prof)
        main_prof.enable()
        for _ in range(opts["n"] // opts["concurrency"]):
            await asyncio.gather(*(one() for _ in range(opts["concurrency"])))
        main_prof.disable()
        threads.active = False
        stats = threads.stats()
        await queue.put({"type": "lifespan.shutdown"})
        await life
        return stats

    stats = asyncio.run(main())
    table = stats.stats  # type: ignore[attr-defined]
    entries = [(f"{_short(f)}:{line}({func})", v) for (f, line, func), v in table.items()]
    busy = sum(v[2] for where, v in entries if not any(w in where for w in WAITS))
    rows = [
        {"where": where, "calls": nc, "self": tt / busy, "cum": ct / busy}
        for where, (_cc, nc, tt, ct, _callers) in entries
        if not any(w in where for w in WAITS)
    ]
    n = opts["n"] // opts["concurrency"] * opts["concurrency"]
    out = {"total_ms_per_request": 1000 * busy / n, "threads": len(threads.profiles), "rows": rows}
    print(json.dumps(out))
    return 0


def _short(file: str) -> str:
    for marker in ("site-packages/", "/operator/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


@dataclass
class Profiling:
    """A profile child under way (see profile_child)."""

    config: str
    model: str
    requests: int
    concurrency: int
    proc: subprocess.Popen[bytes]
    log: Path

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate()
        if self.proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise SystemExit(f"profiling {self.config} ({self.model}) failed:\n{tail}")
        res: dict[str, Any] = json.loads(out)
        res.update(config=self.config, model=self.model, requests=self.requests,
                   concurrency=self.concurrency)  # fmt: skip
        return res


def start_profile(cfg: Config, args: list[str], w: Workload, n: int, tmp: Path) -> Profiling:
    conc = 8 if cfg.name == "md-batch" else 1
    spec = {"model": str(w.mlflow_dir), "args": args, "body": w.mlflow_body().decode(), "n": n,
            "concurrency": conc}  # fmt: skip
    log = tmp / f"profile-{cfg.name}-{w.name}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--profile-child", json.dumps(spec)],
                                stdout=subprocess.PIPE, stderr=err, env=_env({}))  # fmt: skip
    return Profiling(cfg.name, w.name, n, conc, proc, log)


# -- the run ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk and not args.smoke:
        raise SystemExit("wrk is not installed (apt-get install wrk); --smoke runs without it")
    tmp = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    help_text = serve_flags()
    notes: list[str] = []
    plan: list[tuple[Config, list[str]]] = []
    mlserver_bin: Path | None = None
    mlserver_name = "MLServer"
    for cfg in CONFIGS:
        if args.only and cfg.name not in args.only and cfg.name != BASELINE:
            continue
        if cfg.kind == "mlserver":
            if args.mlserver == "skip":
                notes.append("mlserver: skipped (--mlserver skip)")
                continue
            mlserver_bin, mlserver_name = mlserver_venv(install=args.mlserver == "install")
            if mlserver_bin is None:
                notes.append(f"mlserver: skipped: {mlserver_name}")
                continue
        cargs, why = resolve_args(cfg, help_text) if cfg.kind == "modeldeploy" else ([], None)
        if why:
            notes.append(f"{cfg.name}: skipped: {why}")
            continue
        plan.append((cfg, cargs))
    for n in notes:
        print(n, file=sys.stderr)
    servers: list[Server] = []
    pending: list[Profiling] = []
    results: dict[str, dict[str, dict[int, list[Point]]]] = {}
    profiles: list[dict[str, Any]] = []
    load: list[float] = []
    try:
        t0 = time.monotonic()
        models = make_models(tmp, args.models)
        print(f"models saved in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        for w in models:
            for cfg, cargs in plan:
                servers.append(start(cfg, w, cargs, tmp, mlserver_bin))
        # The fastest modeldeploy configuration is profiled; in smoke mode alongside the
        # servers' start (nothing is measured), else after the rounds.
        fastest = [c for c in plan if c[0].kind == "modeldeploy"][-1:] if args.profile else []
        to_profile = [(c, a, w) for c, a in fastest for w in models]
        if args.smoke:
            pending = [start_profile(c, a, w, args.profile, tmp) for c, a, w in to_profile]
        for s in servers:
            wait_ready(s)
        print(f"{len(servers)} servers ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        for w in models:
            mine = {s.config: s.answer for s in servers if s.model == w.name}
            if len(set(mine.values())) > 1:
                raise SystemExit(f"the servers answer differently for {w.name}: {mine}")
        scripts = {id(s): wrk_script(tmp, s) if use_wrk else None for s in servers}
        for s in servers:  # warm-up (not in smoke mode), then the steady memory
            if not args.smoke:
                measure(s, 8, 2.0, scripts[id(s)])
            s.memory = group_memory_mb(s.proc.pid)
        for w in models:
            results[w.name] = {c.name: {n: [] for n in args.connections} for c, _ in plan}
        for rnd in range(args.rounds):
            load.append(os.getloadavg()[0])
            for w in models:
                group = [s for s in servers if s.model == w.name]
                order = group if rnd % 2 == 0 else group[::-1]
                for conns in args.connections:
                    for s in order:
                        if s.proc.poll() is not None:
                            raise SystemExit(f"{s.config} ({s.model}) died: see {s.log}")
                        p = measure(s, conns, args.seconds, scripts[id(s)])
                        results[w.name][s.config][conns].append(p)
                        print(f"round {rnd + 1} {w.name} c={conns} {s.config}: "
                              + ", ".join(f"{k}={v:.3g}" for k, v in p.items()),
                              file=sys.stderr)  # fmt: skip
        load.append(os.getloadavg()[0])
        for s in servers:
            s.memory["peak_mb"] = group_memory_mb(s.proc.pid)["peak_mb"]
        t0 = time.monotonic()
        if not args.smoke:  # the profile after the rounds, so that it disturbs none
            pending = [start_profile(c, a, w, args.profile, tmp) for c, a, w in to_profile]
        for prof in pending:
            profiles.append(prof.result())
        print(f"profiles done {time.monotonic() - t0:.1f} s later", file=sys.stderr)
    finally:
        for prof in pending:
            if prof.proc.poll() is None:
                prof.proc.kill()
                prof.proc.wait()
        t0 = time.monotonic()
        stop_all(s.proc for s in servers)
        print(f"servers stopped in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "tree": describe(REPO),
        "runtime": runtime_tree(),
        "load": "wrk -t1" if use_wrk else "Python load loop",
        "rounds": args.rounds,
        "seconds": args.seconds,
        "load_1m": load,
        "notes": notes,
        "mlserver": mlserver_name,
        "models": {w.name: w.title for w in models},
        "memory": {f"{s.model}/{s.config}": s.memory for s in servers},
        "summary": {m: summarize(r) for m, r in results.items()},
        "runs": results,
        "profiles": profiles,
    }


def runtime_tree() -> str:
    """Where `modeldeploy serve` comes from: this tree, or another one on PYTHONPATH."""
    import modeldeploy

    root = Path(modeldeploy.__file__).resolve().parent.parent.parent
    return "this tree" if root == REPO else f"{describe(root)} ({root})"


def describe(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() if out.returncode == 0 else str(tree)


def _med(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def summarize(results: dict[str, dict[int, list[Point]]]) -> dict[str, dict[int, Point]]:
    """Medians over rounds; ratios paired per (round, connections) with the baseline."""
    out: dict[str, dict[int, Point]] = {}
    base = results.get(BASELINE)
    for name, by_conn in results.items():
        out[name] = {}
        for conns, runs in by_conn.items():
            s: Point = {k: _med([r.get(k, float("nan")) for r in runs]) for k in runs[0]}
            rps = [r["rps"] for r in runs]
            s.update(rps_min=min(rps), rps_max=max(rps))
            if base:
                b = base[conns]
                ratios = [r["rps"] / x["rps"] for r, x in zip(runs, b, strict=True)]
                cap = [x["cpu_ms"] / r["cpu_ms"] for r, x in zip(runs, b, strict=True)]
                s.update(rps_ratio=_med(ratios), rps_ratio_min=min(ratios),
                         rps_ratio_max=max(ratios), cpu_ratio=_med(cap))  # fmt: skip
            out[name][conns] = s
    return out


# -- the section -----------------------------------------------------------------------------


def _f(v: float, fmt: str) -> str:
    return "-" if v != v else format(v, fmt)


def markdown(res: dict[str, Any]) -> str:
    load: list[float] = res["load_1m"]
    lines = [
        "## Serving runtime vs `mlflow models serve` and MLServer",
        "",
        f"Measured {res['date']} on {res['machine']} (shared machine; 1-minute load average "
        f"{min(load):.1f}-{max(load):.1f} during the runs), tree {res['tree']}, runtime from "
        f"{res['runtime']}. One row per "
        "request: MLflow's `dataframe_split` for `mlflow models serve` and modeldeploy, the "
        f"same row as one V2 tensor for {res['mlserver']}. Load: `{res['load']}`, "
        f"{res['seconds']} s per point, {res['rounds']} round(s); all servers run together on "
        "loopback and are measured in turn at each connection count (order reversed every other "
        "round). Values are medians over rounds, spreads min-max; ratios are per (round, "
        "connections) against `mlflow` of the same round, then the median. Configurations: "
        "`mlflow` = `mlflow models serve` with 1 worker (MLflow's default here is 2, one per "
        f"core); `mlserver` = {res['mlserver']} with mlserver-sklearn, its defaults (one "
        "inference worker process, no adaptive batching); `md-*` = `modeldeploy serve` with "
        "everything on (drift, confidence on every request, feedback, metrics, access log): "
        "`md-slow` fast path and batching off, `md-fast` fast path on and batching off, "
        "`md-batch` both on (the defaults). Method: `benchmarks/serving_bench.py`.",
    ]
    if res["notes"]:
        lines += ["", "Not measured in this run:", ""] + [f"- {n}" for n in res["notes"]]
    for model, summary in res["summary"].items():
        lines += [
            "",
            f"### {res['models'][model]}",
            "",
            "| server | conn | req/s | req/s min-max | vs mlflow (min-max) | CPU ms/req "
            "| capacity vs mlflow | client p50 ms | client p99 ms | server p50 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        conns = sorted({n for by_conn in summary.values() for n in by_conn})
        for n in conns:
            for name, by_conn in summary.items():
                s = by_conn[n]
                ratio = (f"{s['rps_ratio']:.2f} ({s['rps_ratio_min']:.2f}-{s['rps_ratio_max']:.2f})"
                         if "rps_ratio" in s else "-")  # fmt: skip
                lines.append(
                    f"| {name} | {n} | {s['rps']:.0f} | {s['rps_min']:.0f}-{s['rps_max']:.0f} "
                    f"| {ratio} | {s['cpu_ms']:.2f} | {_f(s.get('cpu_ratio', float('nan')), '.2f')} "
                    f"| {s['p50_ms']:.2f} | {s['p99_ms']:.1f} "
                    f"| {_f(s.get('server_p50_ms', float('nan')), '.2f')} |"
                )
        lines += ["", "| server | RSS after warm-up MB | peak RSS MB |", "|---|---:|---:|"]
        for key, mem in res["memory"].items():
            if key.startswith(f"{model}/"):
                lines.append(
                    f"| {key.split('/', 1)[1]} | {mem['rss_mb']:.0f} | {mem['peak_mb']:.0f} |"
                )
        lines += ["", goals(summary)]
    lines += [
        "",
        "- *CPU ms/req*: user+system CPU of the server's whole process group during the point, "
        "per request; *capacity* = mlflow's CPU per request / this one's, the throughput ratio "
        "on a dedicated core (steadier than req/s on a shared machine, where `wrk` and the "
        "neighbours take CPU too).",
        "- *server p50*: from modeldeploy's own `prediction_latency_seconds` histogram (increase "
        "over the point, interpolated as `histogram_quantile` does; buckets 0.5, 1, 2.5 ms); it "
        "starts once the body is parsed. For the others only the client's figures exist here.",
        "- *RSS*: resident memory of the server's process group (MLServer: its main process and "
        "its inference worker); the peak is the sum of each process's own peak.",
    ]
    for prof in res["profiles"]:
        lines += ["", profile_table(prof)]
    return "\n".join(lines) + "\n"


def goals(summary: dict[str, dict[int, Point]]) -> str:
    md = [n for n in ("md-batch", "md-fast", "md-slow") if n in summary]
    if not md or BASELINE not in summary:
        return "Goals: not assessed (no modeldeploy or mlflow configuration ran)."
    best = md[0]
    parts = []
    for conns, goal in GOALS.items():
        s = summary[best].get(conns)
        if s and "rps_ratio" in s:
            ok = "met" if s["rps_ratio"] >= goal else "not met"
            ratio = s["rps_ratio"]
            parts.append(f"≥ {goal:g}x mlflow at {conns} connections: {ratio:.2f}x ({ok})")
    one = summary[best].get(1, {}).get("server_p50_ms", float("nan"))
    if one == one:
        ok = "met" if one <= GOAL_SERVER_P50_MS else "not met"
        parts.append(
            f"server-side p50 ≤ {GOAL_SERVER_P50_MS:g} ms at 1 connection: {one:.2f} ms ({ok})"
        )
    return f"Goals (issue 14), `{best}`: " + "; ".join(parts) + "."


def profile_table(prof: dict[str, Any], top: int = 15) -> str:
    rows = sorted(prof["rows"], key=lambda r: -r["self"])[:top]
    lines = [
        f"Profile of `{prof['config']}` ({prof['model']}): cProfile of {prof['requests']} "
        f"requests through the ASGI app in-process ({prof['concurrency']} at a time; uvicorn's "
        f"HTTP parsing excluded; {prof['threads']} threads profiled), "
        f"{prof['total_ms_per_request']:.2f} ms of busy time per request under the profiler "
        "(which inflates small calls; the shares are what matter; waits on epoll, locks and "
        "queues left out). Top functions by own time; *with callees* includes waits:",
        "",
        "| function | calls/request | own time | with callees |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['where']}` | {r['calls'] / prof['requests']:.1f} | {100 * r['self']:.1f} % "
            f"| {100 * r['cum']:.1f} % |"
        )
    # The parts a reader looks for: our runtime's, MLflow's and scikit-learn's own functions
    # by time with callees (those that wait in between, like the request handler, left out).
    parts = [r for r in prof["rows"] if r["where"].startswith(LIBRARIES) and r["cum"] <= 1]
    parts = sorted(parts, key=lambda r: -r["cum"])[:top]
    lines += ["", "Largest parts by time with callees:", "",
              "| function | calls/request | with callees |", "|---|---:|---:|"]  # fmt: skip
    for r in parts:
        lines.append(
            f"| `{r['where']}` | {r['calls'] / prof['requests']:.1f} | {100 * r['cum']:.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--models", nargs="+", choices=["iris", "wide"], default=None,
                   help="models to serve (default: both; --smoke: iris)")  # fmt: skip
    p.add_argument("--only", nargs="*", help="configuration names to run (mlflow always runs)")
    p.add_argument("--mlserver", choices=["install", "use", "skip"], default=None,
                   help="create MLServer's venv when missing (default), use it only when "
                   "present (default with --smoke), or leave MLServer out")  # fmt: skip
    p.add_argument("--profile", type=int, default=500, metavar="N",
                   help="requests to profile in-process (0: none)")  # fmt: skip
    p.add_argument("--smoke", action="store_true",
                   help="every configuration once, one short sample; no figures written")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--markdown", type=Path, help="write the report section here")
    p.add_argument("--json", action="store_true", help="print the raw results as JSON")
    p.add_argument("--profile-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.profile_child:
        return profile_child(args.profile_child)
    if args.mlserver is None:
        args.mlserver = "use" if args.smoke else "install"
    if args.models is None:
        args.models = ["iris"] if args.smoke else ["iris", "wide"]
    if args.smoke:
        args.rounds, args.seconds, args.connections, args.profile = 1, 1.0, [8], 50
    return report(args, run, markdown)


def report(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
) -> int:
    """Runs the benchmark, writes its section to --markdown and prints it (or --json); in smoke
    mode only checks that it ran."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    res = run(args)
    text = markdown(res)  # built in smoke mode too: a broken report fails the smoke run
    if getattr(args, "smoke", False):
        print(f"smoke run passed ({Path(sys.argv[0]).name})", file=sys.stderr)
        return 0
    if args.markdown:
        args.markdown.write_text(text)
    print(json.dumps(res, indent=1, default=str) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
