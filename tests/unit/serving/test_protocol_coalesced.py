"""The response transport gathers one loop pass's writes into one send, in order, and never
loses or reorders bytes around close, write_eof and abort."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from modeldeploy.serving.protocol import Coalesced


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))

    def close(self) -> None:
        self.calls.append("close")

    def write_eof(self) -> None:
        self.calls.append("eof")

    def abort(self) -> None:
        self.calls.append("abort")

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


def _pair() -> tuple[Recorder, Coalesced]:
    real = Recorder()
    return real, Coalesced(cast(asyncio.Transport, real), asyncio.get_running_loop())


async def _next_pass() -> None:
    await asyncio.sleep(0)


def test_writes_of_one_pass_leave_in_one_send_in_order() -> None:
    async def main() -> None:
        real, t = _pair()
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"")
        t.write(b'{"predictions": [1]}')
        assert real.calls == [] and t.get_write_buffer_size() == 39
        await _next_pass()
        assert real.calls == [b'HTTP/1.1 200 OK\r\n\r\n{"predictions": [1]}']
        t.write(b"next")
        await _next_pass()
        assert real.calls[1:] == [b"next"] and not t.is_closing()

    asyncio.run(main())


def test_close_and_eof_send_what_waits_first_and_abort_drops_it() -> None:
    async def main() -> None:
        real, t = _pair()
        t.write(b"a")
        t.close()
        t.write(b"b")
        t.write_eof()
        t.write(b"c")
        t.abort()
        await _next_pass()
        assert real.calls == [b"a", "close", b"b", "eof", "abort"]

    asyncio.run(main())
