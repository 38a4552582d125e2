"""The httptools protocol's own guards, in process over a fake transport: the head deadline is
not armed while a pipelined head already waits, an incomplete head past the limit is refused
however it is split, a method llhttp does not know reaches the app through h11, and a 400
for a pipelined request comes after the answers before it."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from modeldeploy.serving.protocol import guarded_httptools


class FakeTransport:
    def __init__(self) -> None:
        self.out = b""
        self.closing = False
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5555)}.get(key, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["method"].encode()})


async def _connect() -> tuple[Any, FakeTransport]:
    cls = guarded_httptools(10, 1024)
    config = Config(app, http=cls, log_config=None, h11_max_incomplete_event_size=1024)
    config.load()
    loop = asyncio.get_running_loop()
    protocol = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)  # type: ignore[call-arg]
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_pipelined_head_already_complete_is_not_given_a_deadline() -> None:
    async def main() -> None:
        p, t = await _connect()
        assert p._head_deadline is not None  # armed at connection start
        p.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert p._head_deadline is None
        await _settle()
        assert t.out.count(b"HTTP/1.1 200") == 2
        assert p._head_deadline is not None  # both answered: waiting for the next head
        p.connection_lost(None)

    asyncio.run(main())


def test_an_incomplete_head_past_the_limit_is_refused_however_it_is_split() -> None:
    async def main() -> None:
        for pieces in (
            [b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 600, b"a" * 600],  # one value, two reads
            [b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200],  # whole headers, one read
        ):
            p, t = await _connect()
            for piece in pieces:
                p.data_received(piece)
            assert t.out.startswith(b"HTTP/1.1 400 ") and t.closing, (pieces[0][:30], t.out)
            assert t.out.endswith(b"Invalid HTTP request received.")
        p, t = await _connect()  # 1000 bytes of head: under the limit, served
        p.data_received(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 500)
        p.data_received(b"a" * 450 + b"\r\n\r\n")
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 200 ") and not t.closing, t.out

    asyncio.run(main())


def test_a_method_llhttp_does_not_know_is_answered_by_the_app_through_h11() -> None:
    async def main() -> None:
        p, t = await _connect()
        p.data_received(b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        assert t.protocol is not None and t.protocol is not p
        assert t.out.startswith(b"HTTP/1.1 200 ") and b"\r\nFOO\r\n" in t.out, t.out
        p, t = await _connect()  # behind another request in the read: uvicorn's 400, after it
        p.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nFOO / HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        assert t.out.startswith(b"HTTP/1.1 200 "), t.out  # the answer before it comes first
        assert t.out.endswith(b"\r\n\r\nInvalid HTTP request received.") and t.closing, t.out

    asyncio.run(main())
