"""Counter-based quality metrics (issue 10) against the per-pod windows they replaced.

The same model as `serving_bench.py` (iris LogisticRegression with its drift baseline) is served
by `modeldeploy serve` from two source trees at once: a reference tree (default: 7d2282b, the
commit before the counters, extracted with `git archive`; or a directory holding `operator/`)
and this one. Everything is on in all three configurations:

  ref          the reference tree with its defaults: drift ring buffer, outcome window,
               confidence on 1 request in 10
  new          this tree with its defaults: counters, confidence on 1 request in 10 (the
               reference's confidence work, so the difference to `ref` is the counters alone)
  new-c1       this tree with --confidence-sample 1: confidence on every request

The servers run together; `wrk -t1` drives each in turn at every connection count, order
reversed every other round, so each (round, connections) point of one configuration is paired
with `ref` measured seconds before or after it. Reported: medians over rounds, the spread, and
the paired ratios to `ref`. Needs `wrk` and git; `--smoke` runs every configuration once for a
second (a Python load loop when wrk is missing) and writes no figures.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from serving_bench import (
    Config,
    Server,
    machine,
    make_models,
    measure,
    report,
    serve_flags,
    start,
    stop_all,
    wait_ready,
    wrk_script,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REF = "7d2282b"  # the last commit with the sliding windows


def describe(tree: Path) -> str:
    """The commit a source tree is at (`-dirty` when it has changes), or its path."""
    out = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else str(tree)


def ref_tree(ref: str, tmp: Path) -> Path:
    """A source tree whose `operator/` holds the reference runtime: `ref` itself when it is a
    directory, else `operator/` of that commit (git archive: no worktree left behind)."""
    if Path(ref).is_dir():
        return Path(ref).resolve()
    res = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "operator"],
        capture_output=True,
    )
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()
        raise SystemExit(f"cannot extract the reference {ref} (a shallow clone?): {err}")
    tar = res.stdout
    dest = tmp / "ref"
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")
    return dest


def imports_from(tree: Path) -> dict[str, str]:
    """The environment that makes `modeldeploy serve` import the runtime from `tree`; fails
    when the package would still come from elsewhere (the venv's editable install)."""
    path = os.pathsep.join(p for p in (str(tree / "operator"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    where = subprocess.run(
        [sys.executable, "-c", "import modeldeploy; print(modeldeploy.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the reference would import modeldeploy from {where}, not {tree}")
    return {"PYTHONPATH": path}


Point = dict[str, float]


def paired(runs: list[Point], base: list[Point], key: str, ratio: bool = True) -> list[float]:
    if ratio:
        return [r[key] / b[key] for r, b in zip(runs, base, strict=True)]
    return [r[key] - b[key] for r, b in zip(runs, base, strict=True)]


def summarize(results: dict[str, dict[int, list[Point]]]) -> dict[str, dict[int, Point]]:
    out: dict[str, dict[int, Point]] = {}
    for name, by_conn in results.items():
        out[name] = {}
        for conns, runs in by_conn.items():
            base = results["ref"][conns]
            rps = [r["rps"] for r in runs]
            ratios = paired(runs, base, "rps")
            cap = [1 / x for x in paired(runs, base, "cpu_ms")]  # ref CPU/req ÷ this one's
            out[name][conns] = {
                **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
                "rps_min": min(rps),
                "rps_max": max(rps),
                "rps_ratio": statistics.median(ratios),
                "rps_ratio_min": min(ratios),
                "rps_ratio_max": max(ratios),
                "cpu_ratio": statistics.median(cap),
                "cpu_ratio_min": min(cap),
                "cpu_ratio_max": max(cap),
                "p50_diff_ms": statistics.median(paired(runs, base, "p50_ms", ratio=False)),
            }
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk and not args.smoke:
        raise SystemExit("wrk is not installed (apt-get install wrk); --smoke runs without it")
    tmp = Path(tempfile.mkdtemp(prefix="serving-quality-bench-"))
    servers: list[Server] = []
    try:
        ref = ref_tree(args.ref, tmp)
        ref_name = describe(ref) if Path(args.ref).is_dir() else args.ref
        configs = [
            Config("ref", "modeldeploy", env=imports_from(ref)),
            Config("new", "modeldeploy"),
        ]
        if "--confidence-sample" in serve_flags():  # gone once confidence costs nothing
            configs.append(Config("new-c1", "modeldeploy", ("--confidence-sample", "1")))
        results: dict[str, dict[int, list[Point]]] = {
            c.name: {n: [] for n in args.connections} for c in configs
        }
        (model,) = make_models(tmp, ["iris"])
        servers = [start(c, model, list(c.args), tmp, None) for c in configs]
        for s in servers:
            wait_ready(s)
        scripts = {s.config: wrk_script(tmp, s) if use_wrk else None for s in servers}
        if not args.smoke:
            for s in servers:  # warm-up; also fills the reference's windows
                measure(s, 8, 3, scripts[s.config])
        load: list[float] = []
        for rnd in range(args.rounds):
            load.append(os.getloadavg()[0])
            order = servers if rnd % 2 == 0 else servers[::-1]
            for conns in args.connections:
                for s in order:
                    point = measure(s, conns, args.seconds, scripts[s.config])
                    results[s.config][conns].append(point)
                    print(f"round {rnd + 1} c={conns} {s.config}: {point}", file=sys.stderr)
        load.append(os.getloadavg()[0])
    finally:
        stop_all(s.proc for s in servers)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "ref": ref_name,
        "tree": describe(REPO),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "load_1m": load,
        "summary": summarize(results),
        "runs": results,
    }


def markdown(res: dict[str, object]) -> str:
    summary: dict[str, dict[int, Point]] = res["summary"]  # type: ignore[assignment]
    load: list[float] = res["load_1m"]  # type: ignore[assignment]
    lines = [
        "## Counter-based quality metrics (issue 10)",
        "",
        f"Measured {res['date']} on {res['machine']} (shared machine; 1-minute load average "
        f"{min(load):.1f}-{max(load):.1f} during the runs). Model and payload as above. "
        f"`ref` is `modeldeploy serve` at {res['ref']} (per-pod windows: drift ring buffer, "
        f"outcome window, confidence on 1 request in 10), `new` this tree ({res['tree']}) "
        "with its defaults (cumulative counters, confidence on 1 request in 10: the difference "
        "to `ref` is the counters), `new-c1` this tree with `--confidence-sample 1` (confidence "
        "on every request). Everything on (drift, confidence, feedback store, access log). Load: "
        f"`wrk -t1` for {res['seconds']} s per point, {res['rounds']} round(s); the three "
        "servers run together and are measured in turn at each connection count (order "
        "reversed every other round), so every point is paired with `ref` of the same round "
        "and connection count. Values are medians over rounds, spreads are min-max; method in "
        "`benchmarks/serving_quality_bench.py`.",
        "",
        "| server | conn | req/s | req/s min-max | req/s vs ref (min-max) | CPU ms/req "
        "| capacity vs ref (min-max) | p50 ms | p50 diff ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    conns = sorted({n for by_conn in summary.values() for n in by_conn})
    for n in conns:
        for name, by_conn in summary.items():
            s = by_conn[n]
            lines.append(
                f"| {name} | {n} | {s['rps']:.0f} | {s['rps_min']:.0f}-{s['rps_max']:.0f} | "
                f"{s['rps_ratio']:.2f} ({s['rps_ratio_min']:.2f}-{s['rps_ratio_max']:.2f}) | "
                f"{s['cpu_ms']:.2f} | "
                f"{s['cpu_ratio']:.2f} ({s['cpu_ratio_min']:.2f}-{s['cpu_ratio_max']:.2f}) | "
                f"{s['p50_ms']:.2f} | {s['p50_diff_ms']:+.2f} | {s['p99_ms']:.1f} |"
            )
    lines += [
        "",
        "- *vs ref*: per (round, connections) against `ref` of the same round, median over "
        "rounds. *capacity* = `ref`'s CPU per request / this one's (user+system CPU of the "
        "server's process group during the run), the throughput ratio on a dedicated core.",
        "- Reading: in the notes at the end of this page.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ref", default=DEFAULT_REF, help="reference commit, or a source tree")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--smoke", action="store_true",
                   help="every configuration once, one short sample; no figures written")  # fmt: skip
    p.add_argument("--markdown", type=Path, help="write the report section here")
    p.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.connections = 1, 1.0, [8]
    return report(args, run, markdown)


if __name__ == "__main__":
    sys.exit(main())
