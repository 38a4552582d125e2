"""uvicorn's h11 protocol with a deadline for the request head (slowloris).

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but any byte received
cancels that timer, and nothing bounds the time a client takes to finish its request line and
headers: 300 connections each sending a header byte now and then were held for ever. Here every
connection must deliver a complete request head within `header_timeout` seconds of opening or of
its previous response, or it is closed. (The body has its own deadline in the app, where a late
body can still be answered 408; header size is bounded by h11's `max_incomplete_event_size`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("modeldeploy.serving")


def guarded_h11(header_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class to pass as uvicorn.Config(http=...)."""

    class Guarded(HeadDeadlineH11):
        pass

    Guarded.header_timeout = header_timeout
    return Guarded


class HeadDeadlineH11(H11Protocol):
    header_timeout: float = 10.0
    _head_deadline: float | None = None  # None: not waiting for a request head
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(cast(asyncio.Transport, Coalesced(transport, self.loop)))
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head arrived and its cycle started
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before super(): it may start a pipelined request, which disarms
        super().on_response_complete()

    def _arm(self) -> None:
        """A deadline, not a timer per request: the one timer of the connection checks it when
        it fires and waits on for a deadline set since (a timer set and cancelled for every
        request costs the loop's heap two operations a request)."""
        self._head_deadline = self.loop.time() + self.header_timeout
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_check)

    def _disarm(self) -> None:
        self._head_deadline = None

    def _head_check(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:  # re-armed since this timer was set
            self._head_timer = self.loop.call_at(deadline, self._head_check)
            return
        self._head_timed_out()

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        log.debug("closing a connection that sent no complete request head in time")
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


class Coalesced:
    """A transport whose writes in one pass of the event loop leave in one `send`.

    uvicorn writes a response's head and its body separately, each a `send` system call on an
    idle socket: two per answer, about a fifth of the server's CPU under load (py-spy). Here
    writes are gathered and handed to the real transport once, at the end of the loop's pass
    (`call_soon`), in the order they came; `close` and `write_eof` hand over what is waiting
    first, `abort` drops it as the real one drops its buffer. Everything else is the transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._parts.append(data)
        if len(self._parts) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        parts, self._parts = self._parts, []
        if parts:
            self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._parts = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._parts))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
