"""Blast radius of a bad version: rolling update against a canary, side by side, every part real.

Runs tests/e2e/test_canary.py::test_a_bad_version_under_a_canary_fails_a_tenth_as_many_requests_
as_under_a_rolling_update `--runs` times. Each run is one episode on the local stack: two
ModelDeployments of one model follow @champion, one with the rolling update and one with a canary
at 10 % through an HTTPRoute (steps 10 % / 50 %, analysis every 3 s, 16 canary answers needed),
40 requests a second each; @champion moves to a version that fails half of its predictions; both
roll back (the rolling update by its alert, test-sized: 5xx share > 0.2 over 20 s for 4 s; the
canary by its analysis). Counted over the same window from the alias move for both: the share of
failed requests, and of requests the bad version itself failed (without the requests no process
answered while kwok's early readiness let a Service point at a pod still loading its model).

`--smoke` (the test suite runs it, tests/e2e/test_benchmarks_smoke.py) checks that the episode
this benchmark runs still exists under its name and collects; it does not run it, since the suite
runs that very test already (tests/e2e/test_canary.py) and one episode takes a minute. No
figures are written.

Usage: python benchmarks/canary_bench.py [--runs N] [--markdown PATH] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TEST = (
    "tests/e2e/test_canary.py::"
    "test_a_bad_version_under_a_canary_fails_a_tenth_as_many_requests_as_under_a_rolling_update"
)


def run_once() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, MODELDEPLOY_RESULTS_DIR=out, CI="true")
        res = subprocess.run(
            [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise SystemExit(f"the episode failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}")
        return dict(json.loads((Path(out) / "canary-ratio.json").read_text()))


def smoke() -> int:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0 or TEST not in res.stdout:
        print(f"smoke: the episode {TEST} does not collect:\n{res.stdout[-4000:]}\n{res.stderr}")
        return 1
    print(f"smoke ok: {TEST} collects")
    return 0


def med(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in runs:
        v: Any = r
        for key in path:
            v = v[key]
        values.append(float(v))
    return statistics.median(values)


def markdown(runs: list[dict[str, Any]]) -> str:
    load = os.getloadavg()[0]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for label, key in (("rolling update", "rollingUpdate"), ("canary at 10 %", "canary")):
        rows.append(
            f"| {label} | {len(runs)} | {100 * med(runs, key, 'share'):.1f} % "
            f"| {100 * med(runs, key, 'badVersionShare'):.1f} % "
            f"| {med(runs, key, 'secondsToRollback'):.1f} s |"
        )
    ratios = ", ".join(f"{r['ratio']:.3f}" for r in runs)
    bad = ", ".join(f"{r['badVersionRatio']:.3f}" for r in runs)
    return f"""## Canary blast radius (issue 12)

Measured {when} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python \
{platform.python_version()} (shared machine; 1-minute load average {load:.1f} at the end), local \
stack. Method in `benchmarks/canary_bench.py`: the e2e episode of `tests/e2e/test_canary.py`, \
{len(runs)} runs, both strategies in the same run, counted over the same window from the alias \
move (median {med(runs, "windowSeconds"):.0f} s). "Failed" counts every request a user saw fail \
(5xx, and requests no process answered); "by the bad version" only the bad version's own 5xx.

| strategy | runs | requests failed | failed by the bad version | rolled back after |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

| ratio canary / rolling update | median | per run |
|---|---:|---|
| requests failed | {med(runs, "ratio"):.3f} | {ratios} |
| failed by the bad version | {med(runs, "badVersionRatio"):.3f} | {bad} |

Most of the rolling update's failed requests are ones no process answered: kwok reports a pod Ready
before its serving process has loaded the model (docs/local-stack.md), which a cluster's readiness
probe would prevent. The second ratio leaves those out.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--smoke", action="store_true", help="check the episode collects; no figures")
    args = p.parse_args(argv)
    if args.smoke:
        return smoke()
    runs = [run_once() for _ in range(args.runs)]
    text = markdown(runs)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
