"""Reading an /invocations request: MLflow's scoring protocol, with errors that name the problem.

The formats are MLflow's own (the same parsers `mlflow models serve` uses), so any client of
`mlflow models serve` works unchanged. What differs is the refusals: where MLflow answers a bad
payload with a 500, a generic message or silence (unknown keys are dropped), this module raises
`BadRequest` with the HTTP status and a message naming the key, column or type at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import BytesIO, StringIO
from typing import Any, Final

from modeldeploy.names import ERR_BAD_INPUT, ERR_MEDIA_TYPE

DF_SPLIT: Final = "dataframe_split"
DF_RECORDS: Final = "dataframe_records"
INSTANCES: Final = "instances"
INPUTS: Final = "inputs"
PARAMS: Final = "params"
FORMATS: Final = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
JSON: Final = "application/json"
CSV: Final = "text/csv"
PARQUET: Final = "application/vnd.apache.parquet"
MAX_MESSAGE: Final = 600
# No MLflow format needs more: a batch of images is {"inputs": [[[[...]]]]}, five levels.
MAX_NESTING: Final = 32


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, error_type: str = ERR_BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "…"
        self.status = status
        self.error_type = error_type


@dataclass(frozen=True)
class Parsed:
    data: Any
    params: dict[str, Any] | None
    unwrapped: bool = False  # unified LLM input: MLflow answers without the "predictions" key


def media_type(content_type: str | None) -> str:
    """The mime type; refuses what MLflow refuses (a charset other than UTF-8, other params)."""
    if not content_type:
        raise BadRequest(
            f"missing Content-Type: send {JSON}, {CSV} or {PARQUET}", 415, ERR_MEDIA_TYPE
        )
    mime, *params = (p.strip() for p in content_type.split(";"))
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() != "charset":
            raise BadRequest(f"unsupported Content-Type parameter {key!r}", 415, ERR_MEDIA_TYPE)
        if value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
            raise BadRequest("only the UTF-8 charset is supported", 415, ERR_MEDIA_TYPE)
    mime = mime.lower()
    if mime not in {JSON, CSV, PARQUET}:
        raise BadRequest(
            f"unsupported Content-Type {mime!r}: send {JSON}, {CSV} or {PARQUET}",
            415,
            ERR_MEDIA_TYPE,
        )
    return mime


def json_media_type(content_type: str | None) -> None:
    """For endpoints that take JSON only (/feedback): 415 for anything else, as /invocations."""
    if media_type(content_type) != JSON:
        raise BadRequest(f"unsupported Content-Type: send {JSON}", 415, ERR_MEDIA_TYPE)


def parse(
    body: bytes, content_type: str | None, schema: Any, type_hint_signature: bool = False
) -> Parsed:
    """Any failure here is the payload's: reading depends only on the bytes and the signature,
    so the same request fails the same way on every version (never a reason to roll back)."""
    mime = media_type(content_type)
    try:
        if mime == CSV:
            return Parsed(_csv(body, schema), None)
        if mime == PARQUET:
            return Parsed(_parquet(body), None)
        return _json(body, schema, type_hint_signature)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest(f"input nested deeper than {MAX_NESTING} levels") from None
    except Exception as exc:  # a parser's surprise about odd input is still odd input
        raise BadRequest(f"could not read the payload: {type(exc).__name__}: {exc}") from None


def load_json(body: bytes) -> Any:
    """json.loads with the refusals every endpoint shares: not UTF-8, malformed, too deep."""
    try:
        obj = json.loads(body.decode("utf-8"))  # decode first: json.loads guesses UTF-16/32
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # deeper than the interpreter's limit: json gives up by itself
        raise BadRequest(f"JSON nested deeper than {MAX_NESTING} levels") from None
    # Fewer brackets than the limit cannot nest deeper than it (brackets inside strings only
    # make the count larger): a one-row request skips the walk.
    if body.count(b"[") + body.count(b"{") > MAX_NESTING and too_deep(obj, MAX_NESTING):
        raise BadRequest(f"JSON nested deeper than {MAX_NESTING} levels")
    return obj


def too_deep(obj: Any, limit: int) -> bool:
    """Whether JSON containers nest more than `limit` levels. Iterative, and a list's element
    types are collected at C speed, so a flat batch of numbers costs one pass per row."""
    stack: list[tuple[Any, int]] = [(obj, 1)] if isinstance(obj, list | dict) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        kinds = set(map(type, children))
        if list in kinds or dict in kinds:
            stack.extend((c, depth + 1) for c in children if type(c) in (list, dict))
    return False


def _json(body: bytes, schema: Any, type_hint_signature: bool) -> Parsed:
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    if not body.strip():
        raise BadRequest('empty body: send a JSON object such as {"dataframe_split": ...}')
    obj = load_json(body)
    if not isinstance(obj, dict):
        raise BadRequest(
            f"the payload must be a JSON object with one of {list(FORMATS)}; "
            f"got a JSON {type(obj).__name__}"
        )
    keys = [k for k in obj if k in FORMATS]
    unknown = sorted(k for k in obj if k not in FORMATS and k != PARAMS)
    params = obj.get(PARAMS)
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f"'params' must be a JSON object, got {type(params).__name__}")
    if not keys:
        if _unified_llm(obj):
            return Parsed(obj, None, unwrapped=True)
        raise BadRequest(
            f"no input key: expected exactly one of {list(FORMATS)}, got keys {sorted(obj)}"
        )
    if unknown:
        raise BadRequest(
            f"unknown payload keys {unknown}: the payload takes exactly one of "
            f"{list(FORMATS)} and optionally 'params'"
        )
    if len(keys) > 1:
        raise BadRequest(f"more than one input key {keys}: send exactly one")
    key = keys[0]
    if type_hint_signature:
        if key != INPUTS:
            raise BadRequest("this model's signature comes from type hints: send 'inputs'")
        return Parsed(obj[INPUTS], params)
    _check_shape(key, obj[key])
    try:
        data = infer_and_parse_data({key: obj[key]}, schema)
    except MlflowException as exc:
        raise BadRequest(f"could not read {key!r}: {exc.message}") from None
    except (ValueError, TypeError, KeyError, AssertionError) as exc:
        raise BadRequest(f"could not read {key!r}: {type(exc).__name__}: {exc}") from None
    return Parsed(data, params)


def _check_shape(key: str, value: Any) -> None:
    """Catch the common shape errors before pandas turns them into obscure messages."""
    if key == DF_SPLIT:
        if not isinstance(value, dict):
            raise BadRequest("'dataframe_split' must be an object with 'columns' and 'data'")
        extra = sorted(set(value) - {"columns", "data", "index"})
        if extra:
            raise BadRequest(f"unknown keys {extra} in 'dataframe_split' (columns, data, index)")
        data = value.get("data")
        if not isinstance(data, list):
            raise BadRequest("'dataframe_split.data' must be a list of rows")
        index = value.get("index")
        if index is not None and (not isinstance(index, list) or len(index) != len(data)):
            # pandas would broadcast one row over a longer index: one row, many predictions.
            raise BadRequest(
                f"'dataframe_split.index' has "
                f"{len(index) if isinstance(index, list) else 'no list of'} entries, "
                f"expected {len(data)} (one per row of 'data')"
            )
        cols = value.get("columns")
        if cols is not None:
            if not isinstance(cols, list):
                raise BadRequest("'dataframe_split.columns' must be a list of names")
            for i, row in enumerate(data):
                if not isinstance(row, list) or len(row) != len(cols):
                    raise BadRequest(
                        f"'dataframe_split.data' row {i} has "
                        f"{len(row) if isinstance(row, list) else 'no'} values, "
                        f"expected {len(cols)} (one per column)"
                    )
    elif key == DF_RECORDS and (
        not isinstance(value, list) or not all(isinstance(r, dict) for r in value)
    ):
        raise BadRequest("'dataframe_records' must be a list of objects (one per row)")


def _unified_llm(obj: dict[str, Any]) -> bool:
    try:
        from mlflow.pyfunc.utils.serving_data_parser import is_unified_llm_input
    except ImportError:  # pragma: no cover - older MLflow
        return False
    return bool(is_unified_llm_input(obj))


def _csv(body: bytes, schema: Any) -> Any:
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import parse_csv_input

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise BadRequest("empty CSV body: send a header line and rows")
    try:
        return parse_csv_input(StringIO(text), schema)
    except MlflowException as exc:
        raise BadRequest(f"could not read CSV: {_first_line(exc.message)}") from None


def _parquet(body: bytes) -> Any:
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import parse_parquet_input

    try:
        return parse_parquet_input(BytesIO(body))  # type: ignore[no-untyped-call]
    except MlflowException as exc:
        raise BadRequest(f"could not read Parquet: {_first_line(exc.message)}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def check_columns(
    data: Any, columns: tuple[str, ...], required: tuple[str, ...], strict: bool
) -> None:
    """Missing (and, when strict, unknown) columns, named, before the model sees the frame."""
    cols = getattr(data, "columns", None)
    if cols is None or not columns:
        return
    present = {str(c) for c in cols}
    missing = [c for c in required if c not in present]
    if missing:
        raise BadRequest(
            f"missing columns {missing}; the model's signature expects {list(columns)}"
        )
    if strict:
        known = set(columns)
        unknown = [str(c) for c in cols if str(c) not in known]
        if unknown:
            raise BadRequest(
                f"unknown columns {unknown}; the model's signature has {list(columns)}"
            )


def schema_error(message: str) -> str | None:
    """The useful part of an MLflow schema-enforcement error, which otherwise echoes the data."""
    marker = "Failed to enforce schema"
    if marker not in message:
        return None
    _, sep, tail = message.partition("Error: ")
    return (tail if sep else message).strip().splitlines()[0]
