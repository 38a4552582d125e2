"""The HTTP surface: a plain ASGI application on uvicorn, one process, one event loop.

Plain ASGI rather than FastAPI: six fixed routes need no router, and the framework's per-request
cost (MLflow's own server pays for FastAPI plus a BaseHTTPMiddleware) is the budget the metrics,
drift and feedback spend instead. Parsing and prediction run in a thread pool, like MLflow's
(`asyncio.to_thread`), so a slow model never stalls /ping, /health or /metrics; everything that
mutates the windows runs on the loop, after the response is sent.

One process rather than several workers: pending predictions (for /feedback) and the drift and
quality windows must see every request of the pod, and the loop is not the bottleneck (see
docs/benchmarks.md); scale out with replicas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modeldeploy import names
from modeldeploy.serving import payload
from modeldeploy.serving.batching import Batcher
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.feedback import Refusal
from modeldeploy.serving.loader import load
from modeldeploy.serving.runtime import Clock, Pending, Runtime, Scored, error_body
from modeldeploy.serving.trust import LoadRefused

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("modeldeploy.serving")
access = logging.getLogger("modeldeploy.serving.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_JSON = b"application/json"
_CLOSE = (b"connection", b"close")
_UNREAD_BODY = (408, 413)
# Bodies up to this size are read by the fast path on the loop (tens of microseconds, GIL-bound
# in a thread too), saving a trip through the thread pool; larger ones are read in the pool.
INLINE_READ_BYTES = 16 * 1024  # answered before the body was read: the connection cannot be reused

# Each route and the methods it answers (405 with `Allow` for the others), as MLflow's server.
ROUTES: dict[str, tuple[str, ...]] = {
    "/invocations": ("POST",),
    "/feedback": ("POST",),
    "/ping": ("GET", "HEAD"),
    "/health": ("GET", "HEAD"),
    "/version": ("GET", "HEAD"),
    "/metrics": ("GET", "HEAD"),
}


class TooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class ServingApp:
    def __init__(self, config: ServeConfig, on_fatal: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.runtime: Runtime | None = None
        self.load_error: str | None = None
        self.on_fatal = on_fatal
        self.executor = ThreadPoolExecutor(config.threads, thread_name_prefix="predict")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batcher: Batcher[Pending, Scored | None] | None = None
        self._answered: list[tuple[Scored, str]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def start_loading(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        threading.Thread(target=self._load, name="model-load", daemon=True).start()

    def _load(self) -> None:
        try:
            runtime = Runtime(self.config, load(self.config))
        except LoadRefused as exc:
            self._failed(str(exc))
            return
        except Exception as exc:
            log.exception("model load failed")
            self._failed(f"could not load {self.config.model_uri!r}: {type(exc).__name__}: {exc}")
            return
        info = runtime.model.info
        log.info(
            "model loaded",
            extra={
                "model_name": info.name,
                "model_version": info.version,
                "run_id": info.run_id,
                "load_seconds": round(runtime.model.load_seconds, 3),
                "task": runtime.task,
                "baseline": runtime.model.baseline is not None,
            },
        )
        fast = runtime.fast
        if fast is not None and fast.batchable and self.config.batch_max_size > 1:
            self.batcher = Batcher(
                runtime.score_batch,
                self.executor,
                self.config.batch_max_size,
                self.config.batch_window_ms / 1000,
            )
        self.runtime = runtime  # one reference assignment: atomic for the loop's readers

    def _failed(self, message: str) -> None:
        self.load_error = message
        log.error(message)
        if self.on_fatal is not None:
            self.on_fatal(message)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path, method = scope["path"], scope["method"]
        allowed = ROUTES.get(path)
        if allowed is None:
            self._refused(names.OTHER_PATH, 404)
            body = error_body(404, "not_found", f"no route {path[:100]!r}", None)
            await _respond(send, 404, body)
            return
        if method not in allowed:
            await self._not_allowed(path, method, allowed, send)
            return
        if path == "/invocations":
            await self._invocations(scope, receive, send)
        elif path == "/feedback":
            await self._feedback(scope, receive, send)
        elif path == "/ping":
            await _respond(send, 200, b"\n")
        elif path == "/health":
            await self._health(send)
        elif path == "/version":
            await self._version(send)
        else:
            await self._metrics(send)

    async def _not_allowed(
        self, path: str, method: str, allowed: tuple[str, ...], send: Send
    ) -> None:
        allow = ", ".join(allowed)
        msg = f"{method[:16]} is not allowed on {path}: use {allow}"
        rt = self.runtime
        if rt is not None:
            if path == "/invocations":
                rt.metrics.request(405, None, names.ERR_METHOD)
            else:
                rt.metrics.refused(path, 405)
        body = error_body(405, names.ERR_METHOD, msg, None)
        await _respond(send, 405, body, [(b"allow", allow.encode())])

    def _refused(self, path: str, code: int) -> None:
        if self.runtime is not None:
            self.runtime.metrics.refused(path, code)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_loading(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        rid = _request_id(headers)
        rid_header = [(b"x-request-id", rid.encode())]
        runtime = self.runtime
        if runtime is None:
            body = error_body(503, "not_ready", self._not_ready(), rid)
            await _respond(send, 503, body, rid_header)
            return
        metrics = runtime.metrics
        metrics.in_flight.inc()
        try:
            scored = await self._score(runtime, headers, receive, rid)
            extra = rid_header + ([_CLOSE] if scored.status in _UNREAD_BODY else [])
            await _respond(send, scored.status, scored.body, extra)
        except ClientGone:
            scored = Scored(499, b"", names.ERR_CLIENT_GONE)
        finally:
            metrics.in_flight.dec()
        metrics.request(scored.status, scored.seconds, scored.error_type)
        if scored.status == 200:
            self._observe_soon(runtime, scored, rid)
        self._access(runtime, rid, scored, headers)

    def _observe_soon(self, runtime: Runtime, scored: Scored, rid: str) -> None:
        """Observed in the loop's next pass, together with the other requests answered in this
        one (a batch's requests all wake in the same pass): one numpy pass for all their rows.
        Still after each response was sent, and before the loop reads another request."""
        self._answered.append((scored, rid))
        if len(self._answered) == 1:
            asyncio.get_running_loop().call_soon(self._observe_answered, runtime)

    def _observe_answered(self, runtime: Runtime) -> None:
        answered, self._answered = self._answered, []
        try:
            runtime.observe_many(answered)
        except Exception:  # the answers are sent; say so in the log, keep serving
            log.exception("observing answered requests failed")

    async def _score(
        self, runtime: Runtime, headers: dict[bytes, bytes], receive: Receive, rid: str
    ) -> Scored:
        body = await self._body(headers, receive)
        if isinstance(body, Scored):
            body.body = error_body(body.status, body.error_type or "", body.message or "", rid)
            return body
        ctype = headers.get(b"content-type", b"").decode("latin-1") or None
        loop = asyncio.get_running_loop()
        clock = Clock()
        work: Awaitable[Scored]
        if self.batcher is not None:
            work = self._batched(self.batcher, runtime, body, ctype, rid, clock)
        else:
            work = loop.run_in_executor(self.executor, runtime.score, body, ctype, rid, clock)
        try:
            # asyncio.timeout, not wait_for: wait_for runs `work` in a task of its own, two more
            # loop round trips per request for the same deadline.
            async with asyncio.timeout(self.config.timeout):
                return await work
        except TimeoutError:
            limit_s = self.config.timeout
            msg = f"prediction took longer than {limit_s:g}s (MODELDEPLOY_PREDICT_TIMEOUT)"
            err = names.ERR_TIMEOUT
            scored = Scored(504, error_body(504, err, msg, rid), err, msg)
            if clock.started is not None:
                scored.seconds = time.perf_counter() - clock.started
            return scored
        except Exception as exc:  # a bug of ours: say so in JSON, count it, keep serving
            log.exception("internal error while scoring")
            msg = f"internal error: {type(exc).__name__}"
            err = names.ERR_INTERNAL
            return Scored(500, error_body(500, err, msg, rid), err, msg)

    async def _batched(
        self,
        batcher: Batcher[Pending, Scored | None],
        runtime: Runtime,
        body: bytes,
        ctype: str | None,
        rid: str,
        clock: Clock,
    ) -> Scored:
        """Read by the fast path, then predicted with whatever else is waiting; a request the
        fast path does not read, or whose prediction failed, goes through MLflow's path."""
        loop = asyncio.get_running_loop()
        if len(body) <= INLINE_READ_BYTES:
            features = runtime.read_fast(body, ctype)
        else:
            batcher.arriving(1)
            try:
                features = await loop.run_in_executor(self.executor, runtime.read_fast, body, ctype)
            finally:
                batcher.arriving(-1)
        if features is not None:
            clock.started = time.perf_counter()
            scored = await batcher.submit(Pending(features, rid, clock))
            if scored is not None:
                return scored
        return await loop.run_in_executor(
            self.executor, runtime.score, body, ctype, rid, clock, False
        )

    async def _body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | Scored:
        """The whole body, or the refusal (413, 408) without its body; raises ClientGone."""
        limit = self.config.max_body_bytes
        try:
            async with asyncio.timeout(self.config.body_timeout):
                return await _read_body(headers, receive, limit)
        except TooLarge:
            msg = f"request body larger than {limit} bytes (MODELDEPLOY_MAX_BODY_BYTES)"
            return Scored(413, b"", names.ERR_TOO_LARGE, msg)
        except TimeoutError:
            msg = (
                f"request body not received within {self.config.body_timeout:g}s "
                "(MODELDEPLOY_BODY_TIMEOUT)"
            )
            return Scored(408, b"", names.ERR_REQUEST_TIMEOUT, msg)

    def _access(
        self, runtime: Runtime, rid: str, scored: Scored, headers: dict[bytes, bytes]
    ) -> None:
        if not access.isEnabledFor(logging.INFO):
            return
        info = runtime.model.info
        extra: dict[str, Any] = {
            "request_id": rid,
            "model_name": info.name,
            "model_version": info.version,
            "status": scored.status,
            "outcome": scored.error_type or "ok",
            "latency_ms": None if scored.seconds is None else round(scored.seconds * 1000, 3),
            "rows": scored.rows,
        }
        if scored.message:
            extra["error"] = scored.message
        if self.config.log_payloads and scored.status == 200:
            extra["predictions"] = scored.body.decode("utf-8", "replace")[:4096]
        access.info("prediction", extra=extra)

    def _not_ready(self) -> str:
        return self.load_error or "the model is still loading"

    async def _health(self, send: Send) -> None:
        rt = self.runtime
        if rt is None:
            state = "failed" if self.load_error else "loading"
            body = {"status": state, "message": self._not_ready()}
            await _respond(send, 503, json.dumps(body).encode())
            return
        info = rt.model.info
        body = {"status": "ready", "model_name": info.name, "model_version": info.version}
        await _respond(send, 200, json.dumps(body).encode())

    async def _version(self, send: Send) -> None:
        from mlflow.version import VERSION as MLFLOW_VERSION

        from modeldeploy import __version__

        out: dict[str, Any] = {
            "model_uri": self.config.model_uri,
            "mlflow_version": MLFLOW_VERSION,
            "modeldeploy_version": __version__,
        }
        rt = self.runtime
        if rt is not None:
            info = rt.model.info
            out |= {"model_name": info.name, "model_version": info.version, "run_id": info.run_id}
        await _respond(send, 200 if rt else 503, json.dumps(out).encode())

    async def _metrics(self, send: Send) -> None:
        rt = self.runtime
        if rt is None:
            await _respond(send, 503, b"# model not loaded yet\n", content_type=b"text/plain")
            return
        await _respond(
            send,
            200,
            generate_latest(rt.metrics.registry),
            content_type=CONTENT_TYPE_LATEST.encode(),
        )

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        rt = self.runtime
        if rt is None:
            await _respond(send, 503, error_body(503, "not_ready", self._not_ready(), None))
            return
        try:
            payload.json_media_type(headers.get(b"content-type", b"").decode("latin-1") or None)
        except payload.BadRequest as exc:
            rt.metrics.feedback(Refusal.MEDIA_TYPE)
            await _respond(send, 415, error_body(415, names.ERR_MEDIA_TYPE, exc.message, None))
            return
        try:
            body = await self._body(headers, receive)
        except ClientGone:
            return
        if isinstance(body, Scored):
            rt.metrics.feedback(Refusal(body.error_type or Refusal.INVALID_BODY))
            out = error_body(body.status, body.error_type or "", body.message or "", None)
            await _respond(send, body.status, out, [_CLOSE])
            return
        status, result = rt.feedback(body)
        await _respond(send, status, json.dumps(result).encode())
        log.info("feedback", extra={"status": status, "reason": result.get("reason", "ok")})


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope["headers"]}


def _request_id(headers: dict[bytes, bytes]) -> str:
    raw = headers.get(b"x-request-id")
    if raw:
        text = raw.decode("latin-1")
        if _VALID_ID.match(text):
            return text
    return uuid.uuid4().hex


async def _read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = _JSON,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
