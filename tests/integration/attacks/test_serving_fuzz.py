"""Every serving endpoint fuzzed with generated requests against a real `modeldeploy serve`:
never a 5xx for bad input, the process alive and /ping 200 afterwards, and every request counted
in /metrics under the status it got.

Hypothesis generates the requests, derandomized (the same examples on every run, so CI is
reproducible) and with a bounded count per test. The hand-picked cases live in
tests/integration/serving/test_bad_input.py and test_hardening.py; these find what nobody picked.

Where a request is counted (operator/modeldeploy/serving/app.py):
- /invocations, any method: prediction_requests_total{code};
- /feedback (POST): prediction_feedback_total{outcome}, once per feedback item (a plain body is
  one item, {"feedback": [...]} as many as the list holds);
- a known path with a wrong method: http_requests_refused_total{path, code="405"};
- any other path: http_requests_refused_total{path="other", code="404"};
- GET/HEAD of /ping, /health, /version, /metrics: not counted (read-only, never refused).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldeploy import names
from modeldeploy.serving.app import ROUTES  # every route the server answers: all are fuzzed
from tests.integration.attacks.junk import KNOWN_JUNK, poke_raw
from tests.integration.serving.conftest import FEATURES, Models, Server

pytestmark = pytest.mark.attacks

LIMIT = 50_000  # --max-body-bytes of the target server
FUZZ = settings(
    max_examples=200,
    derandomize=True,  # the same examples every run: a CI failure reproduces locally
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; format=pandas-split",
    "application/json; charset=latin-1",
    "text/csv",
    "application/vnd.apache.parquet",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
    ";;;",
    "application/json;charset",
]


@pytest.fixture(scope="module")
def target(models: Models, serve: Any) -> Server:
    """A server of this module's own, so metric deltas are this module's requests alone."""
    return serve(f"models:/{models.classifier}@champion", "--max-body-bytes", str(LIMIT))


class Client:
    """Raw http.client requests (no URL re-quoting, any method), tallied by where the server
    counts them; `expected()` is what /metrics must have grown by."""

    def __init__(self, server: Server) -> None:
        self.server = server
        host, port = server.url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.sent: Counter[tuple[str, str, str]] = Counter()

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
        finally:
            conn.close()
        assert status < 500, f"{method} {path} {headers} {body!r:.300}: {status} {data!r:.300}"
        self._tally(method, path, status, body)
        return status, data

    def _tally(self, method: str, path: str, status: int, body: bytes | None) -> None:
        allowed = ROUTES.get(path)
        if path == "/invocations":
            self.sent[(names.PREDICTION_REQUESTS, "code", str(status))] += 1
        elif allowed is None:
            assert status == 404, (method, path, status)
            self.sent[(names.HTTP_REFUSED, names.OTHER_PATH, "404")] += 1
        elif method not in allowed:
            assert status == 405, (method, path, status)
            self.sent[(names.HTTP_REFUSED, path, "405")] += 1
        elif path == "/feedback":
            self.sent[(names.FEEDBACK_TOTAL, "items", "")] += feedback_items(body, status)
        else:
            assert status == 200, (method, path, status)

    def counted(self) -> Counter[tuple[str, str, str]]:
        """The same keys as `sent`, read from /metrics."""
        out: Counter[tuple[str, str, str]] = Counter()
        for (name, labels), value in self.server.metrics().items():
            ls = dict(labels)
            if name == names.PREDICTION_REQUESTS:
                out[(names.PREDICTION_REQUESTS, "code", ls["code"])] += int(value)
            elif name == names.HTTP_REFUSED:
                out[(names.HTTP_REFUSED, ls["path"], ls["code"])] += int(value)
            elif name == names.FEEDBACK_TOTAL:
                out[(names.FEEDBACK_TOTAL, "items", "")] += int(value)
        return out


def feedback_items(body: bytes | None, status: int) -> int:
    """How many feedback items the server counts for a POST /feedback it answered `status`."""
    if status != 200:
        return 1  # every refusal is counted once, by its reason
    obj = json.loads(body or b"null")
    if isinstance(obj, dict) and isinstance(obj.get("feedback"), list):
        return len(obj["feedback"])
    return 1


def grown_by(before: Counter[Any], after: Counter[Any]) -> Counter[Any]:
    return Counter({k: after[k] - before[k] for k in after if after[k] != before[k]})


def fuzz(server: Server, run: Callable[[Client], None]) -> Counter[tuple[str, str, str]]:
    """Runs the generated requests; then checks the process lives, answers /ping, and counted
    exactly what was sent. Returns the tally."""
    client = Client(server)
    before = client.counted()
    run(client)
    assert server.proc.poll() is None, f"the server died:\n{server.log_text()[-3000:]}"
    assert server.get("/ping").status_code == 200
    assert grown_by(before, client.counted()) == +client.sent
    return client.sent


# --- strategies ------------------------------------------------------------------------------

HUGE = [10**308, -(10**308), 10**400, 2**64, -(2**63) - 1, 1e308, -1e308, 5e-324]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(),  # NaN and ±Infinity included: json.dumps writes them as NaN/Infinity tokens
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
cells = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(), scalars))
good_rows = st.lists(st.lists(st.floats(0, 10), min_size=4, max_size=4), min_size=1, max_size=3)
columns = st.one_of(
    st.just(FEATURES),
    st.lists(st.sampled_from([*FEATURES, "extra", ""]), max_size=6),
    st.lists(st.text(max_size=10), max_size=5),
)


@st.composite
def mlflow_payloads(draw: st.DrawFn) -> Any:
    """Near-valid bodies in each of MLflow's four JSON input formats, with wrong types, missing
    or extra columns, huge numbers, NaN/Infinity, unicode and optional params."""
    cols = draw(columns)
    rows = draw(st.one_of(good_rows, st.lists(st.lists(cells, max_size=6), max_size=4)))
    kind = draw(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs"]))
    if kind == "dataframe_split":
        value: Any = {"columns": cols, "data": rows}
        if draw(st.booleans()):
            value["index"] = draw(st.lists(scalars, max_size=5))
    elif kind == "dataframe_records":
        value = [dict(zip(cols, row, strict=False)) for row in rows] or draw(json_values)
    elif kind == "instances":
        value = draw(st.one_of(st.just(rows), st.lists(st.dictionaries(st.sampled_from(
            FEATURES), cells), max_size=3), json_values))  # fmt: skip
    else:
        value = draw(st.one_of(st.just(rows), st.dictionaries(st.sampled_from(FEATURES),
            st.lists(cells, max_size=3)), json_values))  # fmt: skip
    body: dict[str, Any] = {kind: value}
    if draw(st.integers(0, 4)) == 0:
        body["params"] = draw(json_values)
    if draw(st.integers(0, 6)) == 0:
        body[draw(st.text(max_size=8))] = draw(scalars)
    return body


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def dumps(value: Any) -> bytes:
    """JSON as a lenient client writes it: NaN/Infinity tokens, non-ASCII as UTF-8."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except ValueError:  # an int past Python's digit limit: send it anyway, digit by digit
        return json.dumps(value, default=str).encode()


# --- the tests -------------------------------------------------------------------------------


def test_invocations_survive_near_valid_mlflow_payloads(target: Server) -> None:
    def run(client: Client) -> None:
        @FUZZ
        @given(body=mlflow_payloads(), ctype=st.sampled_from(CONTENT_TYPES[:3]))
        def probe(body: Any, ctype: str) -> None:
            status, data = client.send("POST", "/invocations", dumps(body), {"Content-Type": ctype})
            answer = json.loads(data)
            if status != 200:
                assert answer["error_code"] and answer["message"], answer
                assert answer["request_id"], answer

        probe()

    sent = fuzz(target, run)
    codes = {code for _, _, code in sent}
    assert {"200", "400"} <= codes, sent  # some were valid after all: the bar is not "all 4xx"


def test_invocations_survive_random_bytes_json_and_content_types(target: Server) -> None:
    def run(client: Client) -> None:
        @FUZZ
        @given(
            body=st.one_of(
                st.binary(max_size=2000),
                json_values.map(dumps),
                st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
                st.integers(1, 3000).map(nested),
                st.integers(1, 3000).map(lambda d: b'{"inputs": ' + nested(d) + b"}"),
                st.integers(1, 3000).map(lambda d: nested(d, '{"a":', "}").replace(b"}", b"", 1)),
            ),
            ctype=st.sampled_from(CONTENT_TYPES),
        )
        def probe(body: bytes, ctype: str) -> None:
            headers = {"Content-Type": ctype} if ctype else {}
            status, data = client.send("POST", "/invocations", body, headers)
            if status != 200:
                assert json.loads(data)["error_code"]

        probe()

    fuzz(target, run)


def test_feedback_survives_generated_bodies(target: Server, models: Models) -> None:
    X = models.iris[0].head(1)
    rid = target.predict(X).headers["X-Request-ID"]  # a real pending prediction to aim at

    def run(client: Client) -> None:
        labels = st.one_of(scalars, st.lists(scalars, max_size=4))
        item = st.fixed_dictionaries(
            {"request_id": st.one_of(st.just(rid), st.text(max_size=200), scalars)},
            optional={"label": scalars, "labels": labels},
        )
        body = st.one_of(
            item.map(dumps),
            st.lists(item, max_size=4).map(lambda items: dumps({"feedback": items})),
            json_values.map(dumps),
            st.binary(max_size=500),
            st.integers(1, 3000).map(nested),
        )

        @FUZZ
        @given(body=body, ctype=st.sampled_from(CONTENT_TYPES))
        def probe(body: bytes, ctype: str) -> None:
            headers = {"Content-Type": ctype} if ctype else {}
            _, data = client.send("POST", "/feedback", body, headers)
            assert isinstance(json.loads(data), dict)

        probe()

    fuzz(target, run)


PATH_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABC0123456789-._~/%:@!$&'()*+,;=")
TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def test_random_methods_paths_and_headers_are_refused_and_counted(target: Server) -> None:
    paths = st.one_of(
        st.sampled_from(list(ROUTES)),
        st.sampled_from(list(ROUTES)).flatmap(
            lambda p: st.text(PATH_CHARS, min_size=1, max_size=20).map(lambda s: p + s)
        ),
        st.text(PATH_CHARS, max_size=60).map(lambda s: "/" + s),
    ).filter(lambda p: "%" not in p and "?" not in p and "#" not in p)  # as the server sees it
    methods = st.one_of(
        st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]),
        st.text(TOKEN_CHARS[:26].upper(), min_size=1, max_size=12),
    )
    headers = st.dictionaries(
        st.text(TOKEN_CHARS, min_size=1, max_size=20).filter(
            lambda h: h.lower() not in {"content-length", "transfer-encoding", "host", "expect"}
        ),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
        max_size=6,
    )

    def run(client: Client) -> None:
        @FUZZ
        @given(method=methods, path=paths, extra=headers, body=st.binary(max_size=200))
        def probe(method: str, path: str, extra: dict[str, str], body: bytes) -> None:
            client.send(method, path, body if method not in {"GET", "HEAD"} else None, extra)

        probe()

    sent = fuzz(target, run)
    assert sent[(names.HTTP_REFUSED, names.OTHER_PATH, "404")] > 0


def test_garbage_on_the_socket_never_kills_the_server(target: Server) -> None:
    """Bytes that are not HTTP, or not HTTP/1.1 the app serves: uvicorn answers 4xx or closes,
    mostly before the app (so nothing is counted), and the server keeps serving. The known
    cases run every time; hypothesis adds generated ones."""
    host, port = target.url.removeprefix("http://").split(":")

    def poke(junk: bytes) -> None:
        poke_raw(host, int(port), junk)

    for junk in KNOWN_JUNK:
        poke(junk)

    @FUZZ
    @given(
        junk=st.one_of(
            st.binary(min_size=1, max_size=3000),
            st.binary(max_size=200).map(lambda b: b"POST /invocations HTTP/1.1\r\n" + b),
            st.sampled_from(KNOWN_JUNK).flatmap(
                lambda known: st.binary(max_size=50).map(lambda tail: known + tail)
            ),
        )
    )
    def probe(junk: bytes) -> None:
        poke(junk)

    probe()
    assert target.proc.poll() is None
    assert target.get("/ping").status_code == 200


# --- oversized bodies ------------------------------------------------------------------------


def upload(server: Server, path: str, chunked: bool) -> tuple[int, int]:
    """Starts a 1 GB upload (announced by Content-Length, or chunked with no length) and sends
    until the server answers. (status, bytes sent by then)."""
    host, port = server.url.removeprefix("http://").split(":")
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {1 << 30}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    piece = b" " * 65536
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        while sent < 1 << 30 and not answer:
            try:
                sock.sendall(chunk)
                sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except TimeoutError:
                pass
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split()[1]), sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/invocations", "/feedback"])
def test_a_body_over_the_limit_is_refused_without_being_read_whole(
    target: Server, path: str, chunked: bool
) -> None:
    """A 1 GB body gets its 413 while almost all of it is still unsent: announced by its
    Content-Length, before any of it is read; chunked, once the limit (50 kB) is passed. Counted
    like any refusal."""
    key, labels = (
        (names.PREDICTION_REQUESTS, {"code": "413"})
        if path == "/invocations"
        else (names.FEEDBACK_TOTAL, {"outcome": names.ERR_TOO_LARGE})
    )
    before = target.value(key, **labels)
    status, sent = upload(target, path, chunked)
    assert status == 413
    assert sent < 100 * LIMIT, f"{sent} bytes sent before the 413"
    assert target.value(key, **labels) - before == 1
    assert target.get("/ping").status_code == 200
