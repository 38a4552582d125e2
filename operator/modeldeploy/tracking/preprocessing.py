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

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from modeldeploy import names
from modeldeploy.tracking.records import (
    PARAM_PREFIX,
    Preprocessing,
    PreprocessingError,
    PreprocessingStep,
    _qualified,
    json_safe,
)

PASSTHROUGH: Final = "passthrough"


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
    earlier = run.data.tags.get(names.TAG_PREPROCESSING)
    if earlier is not None:
        # The whole record decides (params are cut at MLflow's limits and can collide).
        if _recorded_digest(earlier) == record.digest():
            return record
        raise PreprocessingError(
            "this run already records a different preprocessing and MLflow params cannot "
            "change; log it in its own run, e.g. mlflow.start_run(nested=True)"
        )
    logged = {k: v for k, v in run.data.params.items() if k.startswith(PARAM_PREFIX + ".")}
    changed = sorted(k for k in params.keys() & logged.keys() if params[k] != logged[k])
    if changed:
        raise PreprocessingError(
            f"this run already has the param {changed[0]} with another value and MLflow params "
            "cannot change; log it in its own run, e.g. mlflow.start_run(nested=True)"
        )
    mlflow.log_text(record.to_json(), names.PREPROCESSING_ARTIFACT)
    mlflow.log_params(params)
    mlflow.set_tag(names.TAG_PREPROCESSING, record.tag_value())
    return record


def _recorded_digest(tag: str) -> str | None:
    try:
        summary = json.loads(tag)
    except ValueError:
        return None
    return summary.get("sha256") if isinstance(summary, dict) else None


def read_preprocessing(run_id: str, tracking_uri: str | None = None) -> Preprocessing:
    """The preprocessing a run recorded (its artifact), parsed."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        local = MlflowClient(tracking_uri).download_artifacts(
            run_id, names.PREPROCESSING_ARTIFACT, tmp
        )
        return Preprocessing.from_json(Path(local).read_text(encoding="utf-8"))
