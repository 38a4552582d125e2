"""Every benchmark (`benchmarks/*_bench.py`, found by glob: a new one is covered without a line
here) runs in its smoke mode against the session's stack, so a change that breaks a benchmark
fails here instead of at the next `make bench` (the rollback benchmark broke with the change
that made the Alertmanager endpoint require a bearer token, and nobody ran it until issue 14).

`--smoke` is the contract (benchmarks/run_all.py): one short sample of every measurement, no
figures written, exit 0 when it worked and non-zero with a message otherwise. Timings are not
judged: a smoke run on a loaded machine measures nothing.

The runs are started together, when the first of these tests runs: they spend their time
waiting on the cluster, MLflow and Alertmanager (operators starting, rollouts, alert rules), not
computing, so together they take about as long as the slowest instead of the sum. They share
nothing but the stack: each uses namespaces, models and operators of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import IO

import pytest

from tests.conftest import REPO, Cluster, TestStack

BENCHMARKS = sorted(p.name for p in (REPO / "benchmarks").glob("*_bench.py"))
TIMEOUT = 400  # seconds a smoke run may take (about a minute each on a loaded 2-core machine)


class Run:
    def __init__(self, script: str, env: dict[str, str]) -> None:
        self.script = script
        # Outlives this call: the process writes it until it ends; `stop` closes it.
        self.out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / script), "--smoke"],
            cwd=REPO,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self) -> tuple[int, str]:
        try:
            code = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            code = self.proc.wait()
            self.out.write(f"\n[killed after {TIMEOUT} s]".encode())
        self.out.seek(0)
        return code, self.out.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(30)
        self.out.close()


@pytest.fixture(scope="session")
def smoke_runs(
    request: pytest.FixtureRequest,
    stack: TestStack,
    cluster: Cluster,
    mlflow_uri: str,
    prometheus_url: str,
    alertmanager_url: str,
) -> Iterator[dict[str, Run]]:
    """The smoke runs of the benchmarks this session selected, all started at once; the parts
    they use are the session's (started here if need be, stopped with the session)."""
    chosen = {
        item.callspec.params["script"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_benchmark_smoke_mode_runs"
    }
    env = dict(os.environ, MODELDEPLOY_STACK_DIR=str(stack.stack.root))
    runs = {script: Run(script, env) for script in sorted(chosen)}
    yield runs
    for run in runs.values():
        run.stop()


@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmark_smoke_mode_runs(script: str, smoke_runs: dict[str, Run]) -> None:
    code, output = smoke_runs[script].wait()
    assert code == 0, f"benchmarks/{script} --smoke exited {code}:\n{output[-8000:]}"
