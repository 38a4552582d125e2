"""Bad requests get a 4xx naming the fault, model failures a 500, and the server keeps serving."""

from __future__ import annotations

import json

import pytest

from tests.integration.serving.conftest import FEATURES, Models, Server

JSON = {"Content-Type": "application/json"}
ROW = [5.1, 3.5, 1.4, 0.2]


def split(columns: list[str], data: list[list[object]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()


CASES = [
    # (id, body, headers, status, words the message must contain)
    ("malformed-json", b'{"dataframe_split": ', JSON, 400, "malformed JSON"),
    ("json-list", b"[[5.1, 3.5, 1.4, 0.2]]", JSON, 400, "JSON list"),
    ("empty-body", b"", JSON, 400, "empty body"),
    ("unknown-key", json.dumps({"dataframe_split": {"columns": FEATURES, "data": [ROW]},
                                "extra": 1}).encode(), JSON, 400, "'extra'"),
    ("no-input-key", b'{"data": [[1, 2]]}', JSON, 400, "no input key"),
    ("two-input-keys", json.dumps({"inputs": [ROW], "instances": [ROW]}).encode(), JSON, 400,
     "more than one"),
    ("missing-column", split(FEATURES[:3], [ROW[:3]]), JSON, 400,
     "missing columns ['petal_width']"),
    ("wrong-type", split(FEATURES, [["abc", 3.5, 1.4, 0.2]]), JSON, 400, "sepal_length"),
    ("ragged-row", split(FEATURES, [ROW[:2]]), JSON, 400, "row 0 has 2 values"),
    ("records-not-objects", b'{"dataframe_records": [1, 2]}', JSON, 400, "list of objects"),
    ("not-utf8", b'{"inputs": "\xff"}', JSON, 400, "UTF-8"),
    ("bad-csv", b"sepal_length,sepal_width\n\xff\xfe,1\n", {"Content-Type": "text/csv"}, 400,
     "UTF-8"),
    ("text-plain", b"hello", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
    ("no-content-type", b"{}", {"Content-Type": ""}, 415, "Content-Type"),
    ("latin1-charset", b"{}", {"Content-Type": "application/json; charset=latin-1"}, 415, "UTF-8"),
    ("oversize", split(FEATURES, [ROW] * 3000), JSON, 413, "larger than 50000 bytes"),
    # Values the model refuses (sklearn: ValueError) where the signature allows none: the
    # client's fault, so a 400 that the error-rate alert never counts.
    ("nan", b'{"dataframe_split": {"columns": %s, "data": [[NaN, 3.5, 1.4, 0.2]]}}'
     % json.dumps(FEATURES).encode(), JSON, 400, "column 'sepal_length' holds a missing value"),
    ("infinity", b'{"dataframe_records": [{"sepal_length": 5.1, "sepal_width": Infinity, '
     b'"petal_length": 1.4, "petal_width": 0.2}]}', JSON, 400, "an infinite value"),
    ("null", split(FEATURES, [[5.1, None, 1.4, 0.2]]), JSON, 400, "'sepal_width' holds a missing"),
    ("deep-nesting", b'{"inputs": ' + b"[" * 20000 + b"]" * 20000 + b"}", JSON, 400,
     "nested deeper than 32 levels"),
    ("index-longer-than-data", json.dumps({"dataframe_split": {
        "columns": FEATURES, "index": [0, 1, 2], "data": [ROW]}}).encode(), JSON, 400,
     "'dataframe_split.index' has 3 entries, expected 1"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "headers", "status", "words"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_refused_clearly(
    classifier: Server, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    r = classifier.post("/invocations", data=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()
    assert words in err["message"]
    assert err["request_id"] == r.headers["X-Request-ID"]


def test_error_types_are_counted_and_the_server_keeps_serving(
    classifier: Server, models: Models
) -> None:
    def errors(kind: str) -> float:
        return classifier.value("prediction_errors_total", error_type=kind)

    def code(c: str) -> float:
        return classifier.value("prediction_requests_total", code=c)

    kinds = ("bad_input", "unsupported_media_type", "payload_too_large", "model_error")
    before = {k: errors(k) for k in kinds}
    before_400, before_500 = code("400"), code("500")
    for _, body, headers, _, _ in CASES:
        classifier.post("/invocations", data=body, headers=headers)
    n400 = sum(1 for c in CASES if c[3] == 400)
    assert errors("bad_input") - before["bad_input"] == n400
    assert code("400") - before_400 == n400
    assert code("500") == before_500 and errors("model_error") == before["model_error"]
    assert errors("unsupported_media_type") - before["unsupported_media_type"] == 3
    assert errors("payload_too_large") - before["payload_too_large"] == 1
    ok = classifier.predict(models.iris[0].head(2))
    assert ok.status_code == 200 and ok.json()["predictions"] == [0, 0]


def test_model_exception_is_a_500_counted_as_model_error(scorer: Server) -> None:
    before = scorer.value("prediction_errors_total", error_type="model_error")
    r = scorer.post("/invocations", json={"dataframe_records": [{"a": 1.0, "b": 2.0, "boom": 1}]})
    assert r.status_code == 500
    assert r.json()["error_type"] == "model_error"
    assert "ValueError: the boom column is set" in r.json()["message"]
    assert scorer.value("prediction_errors_total", error_type="model_error") - before == 1
    assert scorer.value("prediction_requests_total", code="500") >= 1
    ok = scorer.post("/invocations", json={"dataframe_records": [{"a": 1.0, "b": 2.0, "boom": 0}]})
    # MLflow enforces the unnamed output column into a one-column frame: same as mlflow serve.
    assert ok.status_code == 200 and ok.json()["predictions"] == [{"0": 4.0}]


def test_slow_prediction_times_out_with_504_and_is_counted(scorer: Server) -> None:
    before = scorer.value("prediction_errors_total", error_type="timeout")
    r = scorer.post(
        "/invocations",
        json={"dataframe_records": [{"a": 1.0, "b": 2.0, "boom": 0}], "params": {"sleep": 6}},
    )
    assert r.status_code == 504 and r.json()["error_type"] == "timeout"
    assert scorer.value("prediction_errors_total", error_type="timeout") - before == 1
