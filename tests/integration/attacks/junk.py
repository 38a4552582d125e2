"""Bytes that are not the HTTP/1.1 an endpoint serves, sent raw to any port."""

from __future__ import annotations

import socket

KNOWN_JUNK = [
    b"POST /invocations HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    b"POST /invocations HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    b"GET /ping HTTP/9.9\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # an HTTP/2 preface
    # Upgrades the app does not serve: a WebSocket on a prediction route, h2c.
    b"GET /invocations HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
]


def poke_raw(host: str, port: int, junk: bytes) -> int | None:
    """Sends `junk` and half-closes; the status the server answered (never a 5xx), or None when
    it closed without an HTTP answer."""
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
    if not answer.startswith(b"HTTP/1."):
        return None
    status = int(answer.split()[1])
    assert status < 500, (junk[:100], answer[:300])
    return status
