"""Preprocessing records: the scaling, encoding and feature transformations a model was fitted with.

`log_preprocessing` accepts a scikit-learn Pipeline, ColumnTransformer, FeatureUnion or single
transformer, or a plain list of step dicts for code without scikit-learn, and records each step's
class and parameters three ways: the JSON artifact `modeldeploy/preprocessing.json` (the whole
tree, read back by `read_preprocessing` and the lineage command), one MLflow param per step
parameter (`preprocessing.<step path>.<param>`, searchable and shown in the run's table) and the
run tag `modeldeploy.io/preprocessing` (a summary).

scikit-learn is not imported: objects are recognised by `get_params` and by a parameter holding a
list of `(name, estimator[, columns])` tuples (`steps`, `transformers`, `transformer_list`), which
become nested steps, as do parameters whose value is itself an estimator (a remainder, a wrapped
regressor). A fitted ColumnTransformer contributes its resolved columns (`transformers_`).

MLflow params cannot change once logged, so a second call in the same run logs nothing new: the
same preprocessing again is accepted (a re-run notebook cell), a different one is refused with
PreprocessingError before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from modeldeploy import names

FORMAT: Final = "modeldeploy.preprocessing"
FORMAT_VERSION: Final = 1
PARAM_PREFIX: Final = names.PREPROCESSING_PARAMS
MAX_PARAM_KEY: Final = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
MAX_PARAM_VALUE: Final = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
MAX_TAG_CHARS: Final = 8000
PASSTHROUGH: Final = "passthrough"
_STEP_KEYS: Final = frozenset({"name", "class", "params", "columns", "steps"})
_KEY_UNSAFE = re.compile(r"[^\w\- ]")  # "." separates path segments, so it is replaced too


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

    def tag_value(self) -> str:
        classes = [s.class_name for s in self.steps]
        summary: dict[str, Any] = {
            "artifact": names.PREPROCESSING_ARTIFACT,
            "steps": len(self.steps),
            "classes": classes,
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


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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


# --- reading scikit-learn objects and plain steps ------------------------------------------


def describe_preprocessing(steps_or_pipeline: Any) -> Preprocessing:
    """The record `log_preprocessing` would write, without MLflow.

    A Pipeline's steps are the top-level steps; any other estimator is one step named after its
    class (as `make_pipeline` names them); a list holds step dicts
    (`{"name", "class", "params"?, "columns"?, "steps"?}`) or `(name, estimator)` tuples.
    """
    obj = steps_or_pipeline
    if isinstance(obj, list | tuple):
        if all(isinstance(s, Mapping) for s in obj):
            return Preprocessing(
                tuple(PreprocessingStep.from_dict(s, f"steps[{i}]") for i, s in enumerate(obj))
            )
        members = _members(obj)
        if members is None:
            raise PreprocessingError(
                "a list of steps holds step dicts or (name, estimator) tuples, not a mix"
            )
        return Preprocessing(tuple(_step(m[0], m[1], _columns(m[2:], None)) for m in members))
    if not _is_estimator(obj):
        raise PreprocessingError(
            f"cannot read preprocessing from a {type(obj).__name__}: pass a scikit-learn "
            "Pipeline or transformer, or a list of step dicts"
        )
    steps = getattr(obj, "steps", None)
    members = _members(steps) if steps is not None else None
    if members is not None:  # a Pipeline: its steps are the top level
        return Preprocessing(tuple(_step(m[0], m[1], None) for m in members))
    return Preprocessing((_step(type(obj).__name__.lower(), obj, None),))


def _is_estimator(value: Any) -> bool:
    return hasattr(value, "get_params") and not isinstance(value, type)


def _members(value: Any) -> list[tuple[Any, ...]] | None:
    """`(name, estimator[, columns])` tuples, as in steps/transformers/transformer_list."""
    if not isinstance(value, list | tuple) or not value:
        return None
    for item in value:
        if not (isinstance(item, tuple) and len(item) in (2, 3) and isinstance(item[0], str)):
            return None
        est = item[1]
        plain = est is None or (isinstance(est, str) and est in ("drop", PASSTHROUGH))
        if not (plain or _is_estimator(est)):
            return None
    return list(value)


def _step(name: str, obj: Any, columns: tuple[Any, ...] | None) -> PreprocessingStep:
    if obj is None or isinstance(obj, str):  # "passthrough", "drop", None (= passthrough)
        return PreprocessingStep(name, obj or PASSTHROUGH, {}, columns)
    resolved = _resolved_columns(obj)
    params: dict[str, Any] = {}
    members: list[PreprocessingStep] = []
    nested: list[PreprocessingStep] = []
    for key, value in obj.get_params(deep=False).items():
        group = _members(value)
        if group is not None:
            members.extend(
                _step(m[0], m[1], resolved.get(m[0], _columns(m[2:], obj))) for m in group
            )
        elif _is_estimator(value):
            nested.append(_step(key, value, resolved.get(key)))
        else:
            params[key] = json_safe(value)
    if "remainder" in resolved and all(s.name != "remainder" for s in nested):
        # A string remainder ("drop", "passthrough") is a param; fitted, it also has columns.
        remainder = params.get("remainder")
        kind = remainder if isinstance(remainder, str) else None
        nested.append(_step("remainder", kind, resolved["remainder"]))
    return PreprocessingStep(name, _qualified(type(obj)), params, columns, (*members, *nested))


def _resolved_columns(obj: Any) -> dict[str, tuple[Any, ...]]:
    """A fitted ColumnTransformer's columns per transformer (callables and slices resolved)."""
    fitted = getattr(obj, "transformers_", None)
    if not isinstance(fitted, list | tuple):
        return {}
    out: dict[str, tuple[Any, ...]] = {}
    for item in fitted:
        if isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str):
            cols = _columns((item[2],), obj)
            if cols is not None:
                out[item[0]] = cols
    return out


def _columns(rest: Sequence[Any], owner: Any) -> tuple[Any, ...] | None:
    """Column names (or positions) from a ColumnTransformer selector; None when the selector
    needs the data (a callable, a slice) or there is none. Positions and boolean masks are
    turned into names when the owner was fitted on a DataFrame (`feature_names_in_`)."""
    if not rest:
        return None
    sel = rest[0]
    if isinstance(sel, str | int) and not isinstance(sel, bool):
        sel = [sel]
    if isinstance(sel, np.ndarray):
        sel = sel.tolist()
    if not isinstance(sel, list | tuple):
        return None
    known = getattr(owner, "feature_names_in_", None)
    if sel and all(isinstance(c, bool) for c in sel):
        sel = [i for i, keep in enumerate(sel) if keep]
    if known is not None and all(isinstance(c, int) and not isinstance(c, bool) for c in sel):
        sel = [str(known[c]) for c in sel]
    return tuple(json_safe(c) for c in sel)


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


# --- MLflow ------------------------------------------------------------------------------


def log_preprocessing(steps_or_pipeline: Any) -> Preprocessing:
    """Record preprocessing in the active MLflow run: artifact, params and run tag.

    Needs an active run. Params are immutable in MLflow, so a run records one preprocessing:
    logging the same one again is accepted, a different one raises PreprocessingError (log it
    in its own run, e.g. `mlflow.start_run(nested=True)`).
    """
    import mlflow

    active = mlflow.active_run()
    if active is None:
        raise RuntimeError(
            "log_preprocessing needs an active MLflow run: call it in mlflow.start_run()"
        )
    record = describe_preprocessing(steps_or_pipeline)
    params = record.params()
    run = mlflow.MlflowClient().get_run(active.info.run_id)
    logged = {k: v for k, v in run.data.params.items() if k.startswith(PARAM_PREFIX + ".")}
    changed = sorted(k for k in params.keys() & logged.keys() if params[k] != logged[k])
    if changed or (names.TAG_PREPROCESSING in run.data.tags and logged.keys() != params.keys()):
        raise PreprocessingError(
            "this run already records a different preprocessing and MLflow params cannot change"
            f" (first difference: {(changed or sorted(logged.keys() ^ params.keys()))[0]}); log "
            "it in its own run, e.g. mlflow.start_run(nested=True)"
        )
    mlflow.log_text(record.to_json(), names.PREPROCESSING_ARTIFACT)
    mlflow.log_params(params)
    mlflow.set_tag(names.TAG_PREPROCESSING, record.tag_value())
    return record


def read_preprocessing(run_id: str, tracking_uri: str | None = None) -> Preprocessing:
    """The preprocessing a run recorded (its artifact), parsed."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        local = MlflowClient(tracking_uri).download_artifacts(
            run_id, names.PREPROCESSING_ARTIFACT, tmp
        )
        return Preprocessing.from_json(Path(local).read_text(encoding="utf-8"))
