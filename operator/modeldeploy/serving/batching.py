"""Adaptive batching: concurrent fast-path requests share one call to the model.

A scikit-learn predict on 32 rows costs about what it costs on one, so under concurrency the
requests that arrive while the model is busy are predicted together (as MLServer's and Triton's
adaptive batching do). The batcher lives on the event loop and runs at most one batch at a
time in the prediction pool:

- a request that finds the model idle starts a batch at once: a lone request never waits;
- requests arriving while a batch runs queue up and form the next batch (at most
  `max_size`), which starts the moment the previous one ends;
- the window (`window` seconds) only applies when requests are known to be on their way (read,
  not yet queued: `arriving`), and ends as soon as they are queued or the batch is full.

Only requests the fast path has already read join a batch, so bad input never does (it is
refused, or falls back to MLflow's path, before). What one batch call computes is split per
request by `Runtime.score_batch`, which retries each request alone when the batched call fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Job(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], list[R]],
        executor: Executor,
        max_size: int,
        window: float,
    ) -> None:
        """`run` gets the items of one batch and returns one result per item, in order; it runs
        in `executor`. It must not raise (a batch that fails is retried per item inside it)."""
        self._run = run
        self._executor = executor
        self.max_size = max_size
        self.window = window
        self._queue: list[_Job[T, R]] = []
        self._running = False
        self._arriving = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def arriving(self, delta: int) -> None:
        """A request being read (+1) or read (-1): the window waits only for those."""
        self._arriving += delta
        if delta < 0 and self._wake is not None:
            self._wake.set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        job: _Job[T, R] = _Job(item, loop.create_future())
        self._queue.append(job)
        if self._wake is not None:
            self._wake.set()
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())  # kept: the loop holds tasks weakly
        return await job.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                await self._gather()
                batch = [j for j in self._queue[: self.max_size] if not j.future.done()]
                del self._queue[: self.max_size]
                if not batch:
                    continue
                try:
                    results = await loop.run_in_executor(
                        self._executor, self._run, [j.item for j in batch]
                    )
                except BaseException as exc:  # a bug of ours: every waiting request hears it
                    for j in batch:
                        if not j.future.done():
                            j.future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for j, result in zip(batch, results, strict=True):
                    if not j.future.done():  # a request that timed out no longer waits
                        j.future.set_result(result)
        finally:
            self._running = False
            for j in self._queue:  # only on cancellation (shutdown)
                if not j.future.done():
                    j.future.cancel()
            self._queue.clear()

    async def _gather(self) -> None:
        """Wait up to the window for requests already being read, while the batch has room."""
        if self.window <= 0 or self._arriving <= 0 or len(self._queue) >= self.max_size:
            return
        deadline = time.perf_counter() + self.window
        self._wake = wake = asyncio.Event()
        try:
            while self._arriving > 0 and len(self._queue) < self.max_size:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), left)
                except TimeoutError:
                    return
        finally:
            self._wake = None
