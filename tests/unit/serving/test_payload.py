import json

import pandas as pd
import pytest
from mlflow.models import infer_signature

from modeldeploy.serving.payload import BadRequest, check_columns, media_type, parse, schema_error

FRAME = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
SCHEMA = infer_signature(FRAME).inputs


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 3.0], [2.0, 4.0]]}},
        {"dataframe_records": [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 4.0}]},
        {"instances": [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 4.0}]},
        {"inputs": {"a": [1.0, 2.0], "b": [3.0, 4.0]}},
    ],
)
def test_every_mlflow_json_format_reads_the_same_frame(payload: dict[str, object]) -> None:
    parsed = parse(body(payload), "application/json", SCHEMA)
    pd.testing.assert_frame_equal(pd.DataFrame(parsed.data)[["a", "b"]], FRAME)


def test_csv_reads_a_frame() -> None:
    parsed = parse(b"a,b\n1.0,3.0\n2.0,4.0\n", "text/csv; charset=utf-8", SCHEMA)
    pd.testing.assert_frame_equal(parsed.data, FRAME)


def test_params_are_passed_along() -> None:
    parsed = parse(body({"inputs": {"a": [1.0]}, "params": {"k": 1}}), "application/json", None)
    assert parsed.params == {"k": 1}


@pytest.mark.parametrize(
    ("raw", "ctype", "status", "words"),
    [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"[1, 2]", "application/json", 400, "JSON list"),
        (b"", "application/json", 400, "empty body"),
        (b"\xff\xfe", "application/json", 400, "UTF-8"),
        (body({"dataframe_split": {"columns": ["a"], "data": [[1]]}, "foo": 1}),
         "application/json", 400, "'foo'"),
        (body({"data": [[1]]}), "application/json", 400, "no input key"),
        (body({"inputs": [1], "instances": [1]}), "application/json", 400, "more than one"),
        (body({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0]]}}),
         "application/json", 400, "row 0 has 1 values"),
        (body({"dataframe_records": [1, 2]}), "application/json", 400, "list of objects"),
        (body({"inputs": [1], "params": [1]}), "application/json", 400, "'params'"),
        (b"a,b\n1,2\n", "text/plain", 415, "unsupported Content-Type"),
        (b"a,b\n1,2\n", None, 415, "missing Content-Type"),
        (b"a,b\n1,2\n", "text/csv; charset=latin-1", 415, "UTF-8"),
        (b"a,b\n1,2\n", "text/csv; format=x", 415, "'format'"),
        (b"\xff\xfe", "text/csv", 400, "UTF-8"),
    ],
)  # fmt: skip
def test_bad_payloads_are_refused_with_a_message_naming_the_fault(
    raw: bytes, ctype: str | None, status: int, words: str
) -> None:
    with pytest.raises(BadRequest) as info:
        parse(raw, ctype, SCHEMA)
    assert info.value.status == status
    assert words in info.value.message


def test_missing_columns_are_named() -> None:
    with pytest.raises(BadRequest, match=r"missing columns \['b'\]"):
        check_columns(FRAME[["a"]], ("a", "b"), ("a", "b"), strict=False)


def test_extra_columns_pass_unless_strict() -> None:
    extra = FRAME.assign(c=1)
    check_columns(extra, ("a", "b"), ("a", "b"), strict=False)
    with pytest.raises(BadRequest, match=r"unknown columns \['c'\]"):
        check_columns(extra, ("a", "b"), ("a", "b"), strict=True)


def test_schema_error_keeps_the_reason_and_drops_the_echoed_data() -> None:
    msg = (
        "Failed to enforce schema of data '   a\n0  x' with schema 'a: double'. "
        "Error: Incompatible input types for column a."
    )
    assert schema_error(msg) == "Incompatible input types for column a."
    assert schema_error("something else") is None


def test_media_type_accepts_utf8_charset() -> None:
    assert media_type("Application/JSON; charset=UTF-8") == "application/json"


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeper than json's own recursion limit
        b'{"inputs": ' + b"[" * 35 + b"1.0" + b"]" * 35 + b"}",
        b'{"dataframe_records": [{"a": {"b": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}}]}",
    ],
    ids=["100000-levels", "35-levels", "nested-in-records"],
)
def test_deep_nesting_is_a_400_not_a_crash(raw: bytes) -> None:
    with pytest.raises(BadRequest, match="nested deeper than 32 levels") as info:
        parse(raw, "application/json", None)
    assert info.value.status == 400


def test_nesting_up_to_the_limit_is_read() -> None:
    from modeldeploy.serving.payload import MAX_NESTING, too_deep

    nested: object = [1.0]
    for _ in range(MAX_NESTING - 1):
        nested = [nested]
    assert not too_deep(nested, MAX_NESTING)
    assert too_deep([nested], MAX_NESTING)
    assert not too_deep({"data": [[1.0, 2.0]] * 1000, "columns": ["a", "b"]}, 3)


@pytest.mark.parametrize("index", [[0, 1, 2], [], "abc"])
def test_split_index_must_have_one_entry_per_row(index: object) -> None:
    raw = body({"dataframe_split": {"columns": ["a", "b"], "index": index, "data": [[1.0, 3.0]]}})
    with pytest.raises(BadRequest, match=r"'dataframe_split\.index'"):
        parse(raw, "application/json", SCHEMA)


def test_split_index_matching_the_rows_is_accepted() -> None:
    raw = body({"dataframe_split": {"columns": ["a", "b"], "index": [7], "data": [[1.0, 3.0]]}})
    assert len(parse(raw, "application/json", SCHEMA).data) == 1
