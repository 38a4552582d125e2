"""The records a training run leaves, as data: dataset versions and preprocessing steps.

Pure (no MLflow, no I/O): `modeldeploy.tracking` writes these records and the lineage command
(governance/lineage.py) reads them back with the same classes, so the format has one
definition. docs/tracking.md documents every field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from modeldeploy import names

MLFLOW_DIGEST_CHARS: Final = 36  # MLflow's MAX_DATASET_DIGEST_SIZE
MAX_TAG_CHARS: Final = 8000  # MLflow's MAX_TAG_VAL_LENGTH
FORMAT: Final = "modeldeploy.preprocessing"
FORMAT_VERSION: Final = 1
PARAM_PREFIX: Final = names.PREPROCESSING_PARAMS
MAX_PARAM_KEY: Final = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
MAX_PARAM_VALUE: Final = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
_STEP_KEYS: Final = frozenset({"name", "class", "params", "columns", "steps"})
_KEY_UNSAFE = re.compile(r"[^\w\- ]")  # "." separates path segments, so it is replaced too


# --- dataset versions ------------------------------------------------------------------


class DatasetError(ValueError):
    """Data that cannot be versioned as given; the message says what to pass instead."""


@dataclass(frozen=True)
class SchemaField:
    name: str
    type: str


@dataclass(frozen=True)
class DatasetVersion:
    """One dataset as a run saw it; `to_dict()` is the JSON of the run tag."""

    name: str
    source: str | None
    hash: str  # full lowercase hex
    hash_algorithm: str
    rows: int | None
    columns: int
    schema: tuple[SchemaField, ...]
    logged_at: str  # UTC ISO 8601 with milliseconds
    context: str
    targets: str | None
    schema_truncated: bool = False  # read back from a tag whose schema was cut short

    @property
    def mlflow_digest(self) -> str:
        """The prefix of `hash` that fits MLflow's dataset digest field."""
        return self.hash[:MLFLOW_DIGEST_CHARS]

    @property
    def tag_key(self) -> str:
        return names.TAG_DATASET + self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "hash": self.hash,
            "hashAlgorithm": self.hash_algorithm,
            "rows": self.rows,
            "columns": self.columns,
            "schema": [{"name": f.name, "type": f.type} for f in self.schema],
            "loggedAt": self.logged_at,
            "context": self.context,
            "targets": self.targets,
        }

    def tag_value(self) -> str:
        """Compact JSON within MLflow's tag limit: a schema that does not fit is cut short and
        `"schemaTruncated": true` added (the dataset input keeps the whole schema)."""
        record = self.to_dict()
        text = _compact(record)
        if len(text) <= MAX_TAG_CHARS:
            return text
        record["schema"] = []
        record["schemaTruncated"] = True
        room = MAX_TAG_CHARS - len(_compact(record))
        kept: list[dict[str, str]] = []
        for column in self.schema:
            entry = {"name": column.name, "type": column.type}
            room -= len(_compact(entry)) + (1 if kept else 0)
            if room < 0:
                break
            kept.append(entry)
        record["schema"] = kept
        return _compact(record)

    @classmethod
    def from_dict(cls, raw: Any) -> DatasetVersion:
        """Parse a run tag's record (the lineage reader); raises DatasetError naming the field."""
        if not isinstance(raw, dict):
            raise DatasetError("dataset record: a JSON object is required")
        try:
            return cls(
                name=str(raw["name"]),
                source=None if raw["source"] is None else str(raw["source"]),
                hash=str(raw["hash"]),
                hash_algorithm=str(raw["hashAlgorithm"]),
                rows=None if raw["rows"] is None else int(raw["rows"]),
                columns=int(raw["columns"]),
                schema=tuple(SchemaField(str(f["name"]), str(f["type"])) for f in raw["schema"]),
                logged_at=str(raw["loggedAt"]),
                context=str(raw["context"]),
                targets=None if raw["targets"] is None else str(raw["targets"]),
                schema_truncated=raw.get("schemaTruncated") is True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"dataset record: missing or malformed field {exc}") from exc


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- preprocessing ---------------------------------------------------------------------


class PreprocessingError(ValueError):
    """Steps that cannot be recorded as given, or a record that does not parse."""


@dataclass(frozen=True)
class PreprocessingStep:
    """One step: its name in the parent, fully qualified class, JSON-safe parameters (nested
    estimators excluded: they are `steps`), the columns it applies to (None: all, or unknown)."""

    name: str
    class_name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[Any, ...] | None = None
    steps: tuple[PreprocessingStep, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.class_name,
            "params": dict(self.params),
            "columns": list(self.columns) if self.columns is not None else None,
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "steps[0]") -> PreprocessingStep:
        if not isinstance(raw, Mapping):
            raise PreprocessingError(f"{where}: a JSON object is required")
        unknown = set(raw) - _STEP_KEYS
        if unknown:
            raise PreprocessingError(f"{where}: unknown keys {sorted(unknown)}")
        name, class_name = raw.get("name"), raw.get("class")
        if not isinstance(name, str) or not name:
            raise PreprocessingError(f"{where}.name: a non-empty string is required")
        if not isinstance(class_name, str) or not class_name:
            raise PreprocessingError(f"{where}.class: a non-empty string is required")
        params = raw.get("params") or {}
        if not isinstance(params, Mapping):
            raise PreprocessingError(f"{where}.params: an object is required")
        columns = raw.get("columns")
        if columns is not None and not isinstance(columns, list | tuple):
            raise PreprocessingError(f"{where}.columns: a list or null is required")
        children = raw.get("steps") or []
        if not isinstance(children, list | tuple):
            raise PreprocessingError(f"{where}.steps: a list is required")
        return cls(
            name=name,
            class_name=class_name,
            params={str(k): json_safe(v) for k, v in params.items()},
            columns=tuple(json_safe(c) for c in columns) if columns is not None else None,
            steps=tuple(cls.from_dict(c, f"{where}.steps[{i}]") for i, c in enumerate(children)),
        )


@dataclass(frozen=True)
class Preprocessing:
    """The whole record: the artifact's content, its params and its run tag."""

    steps: tuple[PreprocessingStep, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    def digest(self) -> str:
        """SHA-256 of the whole record (the artifact's JSON): what "the same preprocessing" is."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def tag_value(self) -> str:
        classes = [s.class_name for s in self.steps]
        summary: dict[str, Any] = {
            "artifact": names.PREPROCESSING_ARTIFACT,
            "steps": len(self.steps),
            "classes": classes,
            "sha256": self.digest(),
        }
        while len(_compact(summary)) > MAX_TAG_CHARS and classes:
            classes.pop()
            summary["classesTruncated"] = True
        return _compact(summary)

    def params(self) -> dict[str, str]:
        """`preprocessing.<path>.<param>` → value (strings as they are, the rest as JSON), plus
        `.class` and `.columns` per step; keys and values within MLflow's limits."""
        out: dict[str, str] = {}
        for step in self.steps:
            _flatten(step, PARAM_PREFIX, out)
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> Preprocessing:
        if not isinstance(raw, Mapping):
            raise PreprocessingError("preprocessing: a JSON object is required")
        if raw.get("format") != FORMAT:
            raise PreprocessingError(f"format: expected {FORMAT!r}, got {raw.get('format')!r}")
        if raw.get("version") != FORMAT_VERSION:
            raise PreprocessingError(f"version: {raw.get('version')!r} is not supported (1 is)")
        steps = raw.get("steps")
        if not isinstance(steps, list):
            raise PreprocessingError("steps: a list is required")
        return cls(
            tuple(PreprocessingStep.from_dict(s, f"steps[{i}]") for i, s in enumerate(steps))
        )

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PreprocessingError(f"preprocessing is not valid JSON: {exc}") from exc


def _flatten(step: PreprocessingStep, parent: str, out: dict[str, str]) -> None:
    path = f"{parent}.{_KEY_UNSAFE.sub('_', step.name)}"
    own = {"class": step.class_name}
    if step.columns is not None:
        own["columns"] = _compact(list(step.columns))
    for key, value in step.params.items():
        own[key] = value if isinstance(value, str) else _compact(value)
    for key, value in own.items():
        out[_param_key(f"{path}.{_KEY_UNSAFE.sub('_', key)}")] = _param_value(value)
    for child in step.steps:
        _flatten(child, path, out)


def _param_key(key: str) -> str:
    if len(key) <= MAX_PARAM_KEY:
        return key
    return key[: MAX_PARAM_KEY - 9] + "~" + hashlib.sha256(key.encode()).hexdigest()[:8]


def _param_value(value: str) -> str:
    return value if len(value) <= MAX_PARAM_VALUE else value[: MAX_PARAM_VALUE - 3] + "..."


def _qualified(kind: Any) -> str:
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def json_safe(value: Any) -> Any:
    """A JSON value that says what `value` is, the same in every process: non-finite floats as
    "nan"/"inf"/"-inf", numpy scalars and arrays as numbers and lists, classes and functions by
    qualified name, other objects by repr unless it holds a memory address."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return _qualified(value)
    text = repr(value)
    return _qualified(type(value)) if " at 0x" in text else text
