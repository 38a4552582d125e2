"""The registry client speaks MLflow's REST protocol itself (issue 14): the endpoints, query and
body fields, credentials and error meanings of MLflow's RestStore, checked against a tiny HTTP
server on the loopback interface that answers as `mlflow server` does.

The operator process must not import MLflow, pandas, numpy, scipy or pyarrow on its normal path:
checked in a fresh interpreter, since this test session has imported them all."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from modeldeploy.api.spec import ModelRef
from modeldeploy.registry import rest
from modeldeploy.registry.client import RegistryClient
from modeldeploy.registry.rest import MlflowFallback
from modeldeploy.registry.subscription import RestWebhooks, Wanted, ensure
from modeldeploy.registry.types import ModelNotFound, RegistryUnreachable
from modeldeploy.registry.webhooks import WEBHOOK_EVENTS

LOOPBACK = "127.0.0.1"
API = "/api/2.0/mlflow"
# (status, body) for one request; a str body is sent as is, anything else as JSON.
Answer = tuple[int, Any]
Route = Callable[["Seen"], Answer]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


def version(n: str, **tags: str) -> dict[str, Any]:
    """A ModelVersion as MLflow's JSON carries it (tags are a list of key/value pairs)."""
    return {
        "name": "fraud",
        "version": n,
        "run_id": f"run{n}",
        "source": f"models:/m-{n}",
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
    }


NOT_FOUND: Answer = (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such thing"})


@dataclass
class FakeMlflow:
    """Answers from `routes` keyed by (method, path); everything else is MLflow's 404 for an
    unknown endpoint. Every request is recorded."""

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def on(self, method: str, path: str, answer: Route | Answer) -> None:
        self.routes[(method, path)] = answer if callable(answer) else (lambda _s: answer)


@pytest.fixture
def mlflow() -> Iterator[FakeMlflow]:
    fake = FakeMlflow()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = Seen(
                self.command,
                parts.path,
                parse_qs(parts.query),
                json.loads(raw) if raw else None,
                {k.lower(): v for k, v in self.headers.items()},
            )
            fake.seen.append(seen)
            route = fake.routes.get((self.command, parts.path))
            status, body = route(seen) if route else (404, "<html>Not Found</html>")
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    fake.url = f"http://{LOOPBACK}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's defaults (configure_http), whatever the test process's environment."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_each_selector_asks_mlflows_endpoint_with_its_fields(mlflow: FakeMlflow) -> None:
    mlflow.on("GET", f"{API}/registered-models/alias", (200, {"model_version": version("3")}))
    mlflow.on("GET", f"{API}/model-versions/get", (200, {"model_version": version("2", a="b")}))
    staged = [version("4"), version("11"), version("9")]
    mlflow.on(
        "POST", f"{API}/registered-models/get-latest-versions", (200, {"model_versions": staged})
    )
    mlflow.on("GET", f"{API}/model-versions/search", (200, {"model_versions": [version("12")]}))
    client = RegistryClient(mlflow.url)

    by_alias = client.resolve(ModelRef("fraud", alias="champion"))
    by_version = client.resolve(ModelRef("fraud", version="2"))
    by_stage = client.resolve(ModelRef("fraud", stage="Production"))
    latest = client.resolve(ModelRef("it's"))

    assert (by_alias.version, by_alias.run_id, by_alias.source) == ("3", "run3", "models:/m-3")
    assert (by_version.version, dict(by_version.tags)) == ("2", {"a": "b"})
    assert by_stage.version == "11"  # the highest version number in the stage, not the last
    assert latest.version == "12"
    alias, get, stage, search = mlflow.seen
    assert alias.query == {"name": ["fraud"], "alias": ["champion"]}
    assert get.query == {"name": ["fraud"], "version": ["2"]}
    assert stage.body == {"name": "fraud", "stages": ["Production"]}
    assert search.query == {
        "filter": ["name = 'it\\'s'"],
        "max_results": ["1"],
        "order_by": ["version_number DESC"],
    }


def test_latest_versions_falls_back_to_get_where_post_is_not_served(mlflow: FakeMlflow) -> None:
    endpoint = f"{API}/registered-models/get-latest-versions"
    mlflow.on("POST", endpoint, (404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "no"}))
    mlflow.on("GET", endpoint, (200, {"model_versions": [version("5")]}))
    assert RegistryClient(mlflow.url).resolve(ModelRef("fraud", stage="Staging")).version == "5"
    assert [s.method for s in mlflow.seen] == ["POST", "GET"]
    assert mlflow.seen[1].query == {"name": ["fraud"], "stages": ["Staging"]}


def test_no_such_version_is_model_not_found_and_an_empty_search_too(mlflow: FakeMlflow) -> None:
    mlflow.on("GET", f"{API}/model-versions/get", NOT_FOUND)
    mlflow.on("GET", f"{API}/model-versions/search", (200, {}))
    client = RegistryClient(mlflow.url)
    with pytest.raises(ModelNotFound, match="no such thing"):
        client.resolve(ModelRef("fraud", version="7"))
    with pytest.raises(ModelNotFound):
        client.resolve(ModelRef("fraud"))
    assert client.version_exists("fraud", "7") is False


def test_a_plain_404_is_model_not_found(mlflow: FakeMlflow) -> None:
    # no route: the server's own 404 page, as for a registered model deleted under an alias
    with pytest.raises(ModelNotFound):
        RegistryClient(mlflow.url).resolve(ModelRef("fraud", alias="champion"))


@pytest.mark.parametrize(
    "answer",
    [
        (500, {"error_code": "INTERNAL_ERROR", "message": "database is locked"}),
        (503, "<html>upstream down</html>"),
        (401, "You are not authenticated."),
        (403, {"error_code": "PERMISSION_DENIED", "message": "no"}),
        (200, "<html>a login page</html>"),
    ],
    ids=["500", "503-html", "401", "403", "200-not-json"],
)
def test_other_answers_are_an_outage_never_a_missing_model(
    mlflow: FakeMlflow, answer: Answer
) -> None:
    mlflow.on("GET", f"{API}/registered-models/alias", answer)
    mlflow.on("GET", f"{API}/model-versions/get", answer)
    client = RegistryClient(mlflow.url, {"MLFLOW_TRACKING_TOKEN": "sekrit-token"})
    with pytest.raises(RegistryUnreachable) as err:
        client.resolve(ModelRef("fraud", alias="champion"))
    with pytest.raises(RegistryUnreachable):
        client.version_exists("fraud", "1")
    assert "sekrit" not in str(err.value) and "\n" not in str(err.value)
    assert len(mlflow.seen) == 2  # no retries by default


def test_connection_refused_is_an_outage() -> None:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(RegistryUnreachable, match="ConnectionError"):
        RegistryClient(f"http://{LOOPBACK}:{port}").resolve(ModelRef("fraud", version="1"))


def test_retries_only_when_the_environment_asks(
    mlflow: FakeMlflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([(503, "busy"), (200, {"model_version": version("1")})])
    mlflow.on("GET", f"{API}/model-versions/get", lambda _s: next(answers))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    assert RegistryClient(mlflow.url).resolve(ModelRef("fraud", version="1")).version == "1"
    assert len(mlflow.seen) == 2


@pytest.mark.parametrize(
    ("creds", "header"),
    [
        ({"MLFLOW_TRACKING_TOKEN": "t0k"}, "Bearer t0k"),
        # MlflowHostCreds' rule: user and password together win over a token
        (
            {
                "MLFLOW_TRACKING_USERNAME": "alice",
                "MLFLOW_TRACKING_PASSWORD": "pw",
                "MLFLOW_TRACKING_TOKEN": "t0k",
            },
            "Basic YWxpY2U6cHc=",
        ),
        ({"MLFLOW_TRACKING_USERNAME": "alice"}, None),
        ({}, None),
    ],
    ids=["bearer", "basic", "user-alone", "none"],
)
def test_credentials_are_sent_as_mlflow_sends_them(
    mlflow: FakeMlflow, creds: dict[str, str], header: str | None
) -> None:
    mlflow.on("GET", f"{API}/model-versions/get", (200, {"model_version": version("1")}))
    RegistryClient(mlflow.url, creds).version_tags("fraud", "1")
    assert mlflow.seen[0].headers.get("authorization") == header


def test_tags_are_written_as_mlflow_writes_them(mlflow: FakeMlflow) -> None:
    mlflow.on("POST", f"{API}/model-versions/set-tag", (200, {}))
    RegistryClient(mlflow.url).set_version_tag("fraud", "3", "modeldeploy.io/rejected", "x")
    assert mlflow.seen[0].body == {
        "name": "fraud",
        "version": "3",
        "key": "modeldeploy.io/rejected",
        "value": "x",
    }


def test_mlmodel_of_a_runs_uri_is_read_through_the_artifact_proxy(mlflow: FakeMlflow) -> None:
    mlflow.on(
        "GET", f"{API}/model-versions/get-download-uri", (200, {"artifact_uri": "runs:/r1/model"})
    )
    root = "mlflow-artifacts:/0/r1/artifacts"
    mlflow.on("GET", f"{API}/runs/get", (200, {"run": {"info": {"artifact_uri": root}}}))
    proxied = "/api/2.0/mlflow-artifacts/artifacts/0/r1/artifacts/model/MLmodel"
    mlflow.on("GET", proxied, (200, "flavors: {}\n"))
    client = RegistryClient(mlflow.url, {"MLFLOW_TRACKING_TOKEN": "t0k"})
    assert client.read_mlmodel("fraud", "1") == "flavors: {}\n"
    assert mlflow.seen[1].query == {"run_id": ["r1"]}
    assert mlflow.seen[2].headers["authorization"] == "Bearer t0k"
    mlflow.on("GET", proxied, (404, "gone"))
    assert client.read_mlmodel("fraud", "1") is None


def test_other_artifact_stores_are_read_through_mlflow_loaded_lazily(
    mlflow: FakeMlflow, tmp_path: Path
) -> None:
    (tmp_path / "with" / "MLmodel").parent.mkdir()
    (tmp_path / "with" / "MLmodel").write_text("flavors: {}\n")
    uris = iter([str(tmp_path / "with"), str(tmp_path / "without")])
    mlflow.on(
        "GET",
        f"{API}/model-versions/get-download-uri",
        lambda _s: (200, {"artifact_uri": next(uris)}),
    )
    client = RegistryClient(mlflow.url)
    assert client.read_mlmodel("fraud", "1") == "flavors: {}\n"
    assert client.read_mlmodel("fraud", "2") is None


def test_databricks_uris_go_through_mlflows_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[Any, ...]] = []

    def http_request(creds: str, endpoint: str, method: str, **kw: Any) -> requests.Response:
        asked.append((creds, endpoint, method, kw))
        resp = requests.Response()
        resp.status_code, resp._content = 200, json.dumps({"model_version": version("4")}).encode()
        return resp

    fallback = MlflowFallback(http_request, lambda uri: f"creds of {uri}", None)
    monkeypatch.setattr(rest, "mlflow_fallback", lambda: fallback)
    resolved = RegistryClient("databricks://profile").resolve(ModelRef("fraud", version="4"))
    assert resolved.version == "4"
    assert asked == [
        (
            "creds of databricks://profile",
            f"{API}/model-versions/get",
            "GET",
            {"params": {"name": "fraud", "version": "4"}},
        )
    ]


def test_webhook_subscription_over_rest_is_written_once(mlflow: FakeMlflow) -> None:
    hooks: list[dict[str, Any]] = [{"webhook_id": "other", "name": "someone-else", "url": "x"}]

    def listing(seen: Seen) -> Answer:
        if not seen.query.get("page_token"):  # the first page, then the rest
            return 200, {"webhooks": hooks[:1], "next_page_token": "p2"}
        return 200, {"webhooks": hooks[1:]}

    def create(seen: Seen) -> Answer:
        hooks.append({"webhook_id": "w1", "status": "ACTIVE", **seen.body})  # MLflow's default
        return 200, {"webhook": hooks[-1]}

    mlflow.on("GET", f"{API}/webhooks", listing)
    mlflow.on("POST", f"{API}/webhooks", create)
    mlflow.on("PATCH", f"{API}/webhooks/w1", lambda s: (200, {"webhook": hooks[-1]}))
    wanted = Wanted("prod-modeldeploy", "http://op:8081/webhooks/mlflow", "s3cret")
    api = RestWebhooks(mlflow.url, {"MLFLOW_TRACKING_TOKEN": "t0k"})

    assert ensure(api, wanted) == "created"
    created = hooks[-1]
    assert (created["url"], created["secret"]) == (wanted.url, "s3cret")
    assert {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"} in created["events"]
    assert len(created["events"]) == len(WEBHOOK_EVENTS)
    assert ensure(api, wanted) == "kept"  # found on the second page
    moved = Wanted(wanted.name, "http://elsewhere:8081/webhooks/mlflow", wanted.secret)
    assert ensure(api, moved) == "updated"
    patch = mlflow.seen[-1]
    assert (patch.method, patch.body["url"], patch.body["status"]) == (
        "PATCH",
        moved.url,
        "ACTIVE",
    )
    assert {s.headers.get("authorization") for s in mlflow.seen} == {"Bearer t0k"}


def test_the_operator_process_imports_no_mlflow_nor_its_data_stack() -> None:
    code = (
        "import sys\n"
        "import modeldeploy.controller.main, modeldeploy.controller.handlers\n"
        "import modeldeploy.controller.operator\n"
        "heavy = ('mlflow', 'pandas', 'numpy', 'scipy', 'pyarrow')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == "[]"
