"""uvicorn's httptools protocol (llhttp, a C parser) with a deadline and a size limit for the
request head (slowloris), and one `send` per response.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but any byte received
cancels that timer, and nothing bounds the time a client takes to finish its request line and
headers: 300 connections each sending a header byte now and then were held for ever. Here every
connection must deliver a complete request head within `header_timeout` seconds of opening or of
its previous response, or it is closed. (The body has its own deadline in the app, where a late
body can still be answered 408.)

Nor does llhttp bound a head's size (h11 has `max_incomplete_event_size`; httptools gathers a
header's name and value across reads and reports it only once it is whole): a head still
incomplete after a read is refused with uvicorn's 400 once it holds more than `max_head_bytes`,
as h11 refuses a buffer over its limit. The size is the larger of what the parser has reported
(URL and whole headers) and the bytes received since the head began: exact for a head that
begins a read (every request on a connection of its own); for one that begins behind another
request in the same read, that read's share is known only through the parser's reports, so a
pipelined head may pass the limit by at most the part of one read (≤ 256 KiB in asyncio) that
sits in a header not yet whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("modeldeploy.serving")

INVALID = "Invalid HTTP request received."  # uvicorn's own 400 body, as h11 answered


def guarded_httptools(header_timeout: float, max_head_bytes: int) -> type[asyncio.Protocol]:
    """The protocol class to pass as uvicorn.Config(http=...)."""

    class Guarded(GuardedHttpTools):
        pass

    class GuardedH11(HeadDeadlineH11):
        pass

    Guarded.header_timeout = GuardedH11.header_timeout = header_timeout
    Guarded.max_head_bytes = max_head_bytes
    Guarded.h11_class = GuardedH11
    return Guarded


class HeadDeadline:
    """The request-head deadline both protocols keep (mixed in before uvicorn's protocol)."""

    header_timeout: float = 10.0
    _head_deadline: float | None = None  # None: not waiting for a request head
    _head_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: Any

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

    def _stop_deadline(self) -> None:
        self._disarm()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _closing(self) -> None:
        """What the protocol says before a timed-out connection is closed."""

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        log.debug("closing a connection that sent no complete request head in time")
        self._closing()
        self.transport.close()


class GuardedHttpTools(HeadDeadline, HttpToolsProtocol):
    max_head_bytes: int = 16 * 1024
    _head_open = False  # the parser is inside a request head (begun, not complete)
    _head_seen = 0  # URL and whole-header bytes the parser reported for the open head
    _head_later = 0  # bytes received in the reads after the one the open head began in
    _in_message = False  # between on_message_begin and on_message_complete
    _begun = 0  # messages begun during the current read
    _read = 0  # the current read's length if it started outside a message, else 0
    _refuse_pending = False  # a 400 waits for the answers before it (see _refuse)
    # where a connection whose request llhttp cannot parse goes (see data_received)
    h11_class: type[H11Protocol] | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(cast(asyncio.Transport, Coalesced(transport, self.loop)))
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head's size checked after each read, and a request whose method
        llhttp does not know (it knows a fixed list: `FOO` or `get` are errors to it, not to
        h11) handed with its connection to the h11 protocol, so the app answers it (404/405,
        counted) as before — when the request is the first thing in this read and nothing
        else is in flight on the connection, as it is for a request on a connection of its
        own; otherwise uvicorn's 400."""
        fresh = (
            not self._in_message
            and not self.pipeline
            and (self.cycle is None or self.cycle.response_complete)
        )
        self._begun = 0
        self._read = len(data) if not self._in_message else 0  # a message may begin at byte 0
        if self._head_open:
            self._head_later += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            if fresh and self._begun == 1 and self.h11_class is not None:
                self._hand_to_h11(data)
                return
            self._refuse()
            return
        except httptools.HttpParserError:
            self._refuse()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if (
            self._head_open
            and max(self._head_seen, self._head_later) > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._head_open = False
            self._refuse()  # as uvicorn answered h11's "Receive buffer too long"

    def _refuse(self) -> None:
        """uvicorn's 400 and close — after the answers to the requests before it on the
        connection (llhttp parses ahead of them, h11 did not): sent at once, it would come first
        and be read as the answer to the request still in flight."""
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            self._refuse_pending = True
            self.flow.pause_reading()
            return
        self.logger.warning(INVALID)
        self.send_400_response(INVALID)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # begun at the start of this read: all of the read is the head so far; else (behind
        # another message in the read) what the parser reports is what is known
        later = self._read if self._begun == 0 else 0
        self._head_open, self._head_seen, self._head_later = True, 0, later
        self._in_message = True
        self._begun += 1

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def _hand_to_h11(self, data: bytes) -> None:
        coalesced = cast(Coalesced, self.transport)
        coalesced.flush()
        transport = coalesced.transport
        self._stop_deadline()
        self.connections.discard(self)
        assert self.h11_class is not None
        protocol = self.h11_class(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        protocol.data_received(data)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_seen += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_seen += len(name) + len(value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if not self.pipeline:  # else the next request's head is already here, and complete
            self._arm()
        super().on_response_complete()
        if self._refuse_pending and not self.pipeline and self.cycle.response_complete:
            self._refuse_pending = False
            self._refuse()


class HeadDeadlineH11(HeadDeadline, H11Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(cast(asyncio.Transport, Coalesced(transport, self.loop)))
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head arrived and its cycle started
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before super(): it may start a pipelined request, which disarms
        super().on_response_complete()

    def _closing(self) -> None:
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())


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

    @property
    def transport(self) -> asyncio.Transport:
        return self._transport

    def flush(self) -> None:
        self._flush()

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
