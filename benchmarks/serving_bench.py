"""`modeldeploy serve` against `mlflow models serve`: the same model, the same load, side by side.

Both servers load the same local sklearn model (iris LogisticRegression, with a drift baseline in
the model directory) and are kept running together; `wrk` (one thread) drives them in turn, in
rounds, so slow drifts of a shared machine hit every configuration alike. Each round measures
throughput at a fixed number of connections and latency at one connection. The report is the
median over rounds and the ratios to `mlflow models serve` with the same number of processes.

Configurations:
  mlflow-1w        mlflow models serve, MLFLOW_MODELS_WORKERS=1 (the baseline for the ratios)
  mlflow-2w        mlflow models serve, 2 worker processes (MLflow's default here: one per core)
  modeldeploy      modeldeploy serve, everything on (drift, confidence sampling, feedback, logs)
  modeldeploy-nodrift   the same with --drift false
  modeldeploy-bare      drift, confidence and feedback off: the cost of the server alone

Loopback only. Needs `wrk` (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
BODY = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [[5.1, 3.5, 1.4, 0.2]]}})


@dataclass
class Config:
    name: str
    kind: str  # mlflow | modeldeploy
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


CONFIGS = [
    Config("mlflow-1w", "mlflow", env={"MLFLOW_MODELS_WORKERS": "1"}),
    Config("mlflow-2w", "mlflow", env={"MLFLOW_MODELS_WORKERS": "2"}),
    Config("modeldeploy", "modeldeploy"),
    Config("modeldeploy-nodrift", "modeldeploy", ["--drift", "false"]),
    Config(
        "modeldeploy-bare",
        "modeldeploy",
        ["--drift", "false", "--confidence", "false", "--feedback", "false"],
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_model(root: Path) -> Path:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from modeldeploy.tracking import build_drift_baseline

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = FEATURES
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = root / "iris"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(X, model.predict(X)))
    (path / "drift_baseline.json").write_text(build_drift_baseline(X, target=y).to_json())
    return path


def start(cfg: Config, model: Path, logs: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        **cfg.env,
    }
    if cfg.kind == "mlflow":
        cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(model),
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    else:
        cmd = [str(VENV_BIN / "modeldeploy"), "serve", "--model-uri", str(model),
               "--host", "127.0.0.1", "--port", str(port), *cfg.args]  # fmt: skip
    with open(logs / f"{cfg.name}.log", "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    return proc, port


def wait_ready(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 180
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=BODY.encode(),
        headers={"Content-Type": "application/json"},
    )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{name} not ready")


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


def wrk_script(root: Path) -> Path:
    """The wrk Lua script that POSTs BODY."""
    script = root / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{BODY}'\n"
    )
    return script


def tree_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in a process group (the server and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "pid (comm)": state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def wrk(port: int, connections: int, seconds: int, script: Path, pgid: int = 0) -> dict[str, float]:
    cpu0 = tree_cpu_seconds(pgid) if pgid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/invocations"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = tree_cpu_seconds(pgid) - cpu0 if pgid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    cpu_ms = 1000 * cpu / requests if requests else 0.0
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "cpu_ms": cpu_ms}


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


def run(args: argparse.Namespace) -> dict[str, object]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    model = make_model(tmp)
    script = wrk_script(tmp)
    configs = [c for c in CONFIGS if not args.only or c.name in args.only]
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    results: dict[str, list[dict[str, float]]] = {c.name: [] for c in configs}
    try:
        for c in configs:
            procs[c.name] = start(c, model, tmp)
        for c in configs:
            wait_ready(procs[c.name][1], procs[c.name][0], c.name)
            wrk(procs[c.name][1], args.connections, 2, script)  # warm-up
        for rnd in range(args.rounds):
            order = configs if rnd % 2 == 0 else list(reversed(configs))
            for c in order:
                proc, port = procs[c.name]
                thr = wrk(port, args.connections, args.seconds, script, proc.pid)
                lat = wrk(port, 1, args.seconds, script)
                results[c.name].append(
                    {"rps": thr["rps"], "p99_ms_loaded": thr["p99_ms"], "cpu_ms": thr["cpu_ms"],
                     "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"]}
                )  # fmt: skip
                print(f"round {rnd + 1} {c.name}: {results[c.name][-1]}", file=sys.stderr)
    finally:
        stop_all(proc for proc, _ in procs.values())
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    base = results.get("mlflow-1w")
    if base:  # paired: each round against mlflow-1w of the same round, then the median
        for name, runs in results.items():
            summary[name]["rps_ratio"] = statistics.median(
                r["rps"] / b["rps"] for r, b in zip(runs, base, strict=True)
            )
            summary[name]["p50_diff_ms"] = statistics.median(
                r["p50_ms"] - b["p50_ms"] for r, b in zip(runs, base, strict=True)
            )
            summary[name]["cpu_ratio"] = statistics.median(
                b["cpu_ms"] / r["cpu_ms"] for r, b in zip(runs, base, strict=True)
            )
    return {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "connections": args.connections,
        "summary": summary,
        "runs": results,
    }


def markdown(res: dict[str, object]) -> str:
    summary: dict[str, dict[str, float]] = res["summary"]  # type: ignore[assignment]
    base = summary.get("mlflow-1w")
    lines = [
        "## Serving runtime vs `mlflow models serve`",
        "",
        f"Measured {res['date']} on {res['machine']} (shared machine). Model: iris "
        "LogisticRegression (skops), one row per request (`dataframe_split`). Load: `wrk -t1`, "
        f"{res['connections']} connections for throughput, 1 connection for latency; "
        f"{res['seconds']} s per measurement, {res['rounds']} rounds, all servers running "
        "together and measured in turn (order reversed every other round). Values are medians "
        "over rounds; ratios are to `mlflow-1w` (same number of processes).",
        "",
        "| server | req/s | req/s vs mlflow-1w | CPU ms/req | capacity vs mlflow-1w "
        "| p50 ms (1 conn) | p50 diff ms | p99 ms (1 conn) "
        f"| p99 ms ({res['connections']} conn) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        ratio = f"{s['rps_ratio']:.2f}" if base else "-"
        cap = f"{s['cpu_ratio']:.2f}" if base else "-"
        delta = f"{s['p50_diff_ms']:+.2f}" if base else "-"
        lines.append(
            f"| {name} | {s['rps']:.0f} | {ratio} | {s['cpu_ms']:.2f} | {cap} | "
            f"{s['p50_ms']:.2f} | {delta} | {s['p99_ms']:.2f} | {s['p99_ms_loaded']:.1f} |"
        )
    lines += [
        "",
        "- *req/s vs mlflow-1w*, *p50 diff*: per round against mlflow-1w of the same round, "
        "median over rounds (pairing cancels most of the machine's drift).",
        "- *CPU ms/req*: user+system CPU of the server's whole process group during the "
        "throughput run, per request; *capacity* = mlflow-1w's CPU per request / this one's, "
        "i.e. the throughput ratio on a dedicated core. It is the steadier number on a shared "
        "machine, where wall-clock throughput also measures the neighbours.",
    ]
    runs: dict[str, list[dict[str, float]]] = res["runs"]  # type: ignore[assignment]
    lines += ["", "Throughput per round (req/s), to show the spread:", ""]
    for name, rounds in runs.items():
        lines.append(f"- {name}: {', '.join(str(round(r['rps'])) for r in rounds)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--only", nargs="*", help="configuration names to run")
    p.add_argument("--markdown", type=Path, help="write the report section here")
    p.add_argument("--json", action="store_true", help="print the raw results as JSON")
    return report(p.parse_args(argv), run, markdown)


def report(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, object]],
    markdown: Callable[[dict[str, object]], str],
) -> int:
    """Runs the benchmark, writes its section to --markdown and prints it (or --json)."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    res = run(args)
    text = markdown(res)
    if args.markdown:
        args.markdown.write_text(text)
    print(json.dumps(res, indent=1) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
