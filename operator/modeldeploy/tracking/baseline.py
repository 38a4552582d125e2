"""Drift baselines: what the training data looked like, stored next to the model.

The serving runtime compares the features it receives with this baseline (PSI per feature over a
sliding window), so the baseline must be computed on the data the model was trained on and
travel with the model version. `log_drift_baseline` writes it as `drift_baseline.json` into the
logged model's own artifacts (MLflow 3 keeps a model's files apart from its run's), so that
`models:/name/version` downloads it with the model and the server finds it at load.

Format (version 1), documented in docs/serving.md:

    {"format": "modeldeploy.drift_baseline", "version": 1, "rows": 1000,
     "features": [
        {"name": "age", "kind": "numeric", "edges": [e1, ..., e(k-1)],
         "proportions": [p0, ..., p(k-1)], "missing_ratio": 0.0},
        {"name": "color", "kind": "categorical", "categories": ["red", "blue"],
         "proportions": [p_red, p_blue, p_other], "missing_ratio": 0.01}],
     "target": {...same shape as a feature, optional...}}

A numeric value x falls in bin `searchsorted(edges, x, side="right")`, i.e. bin i holds
edges[i-1] <= x < edges[i]; the edges are inner cut points (quantiles of the training data), so
the outer bins are open-ended and a value outside the training range still lands in a bin.
Proportions are over non-missing values and sum to 1; missing values (NaN/None) are counted
apart, in `missing_ratio`. Categorical features have one extra trailing bin for categories not
seen in training.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from modeldeploy import names

BASELINE_FILE: Final = "drift_baseline.json"
FORMAT: Final = "modeldeploy.drift_baseline"
FORMAT_VERSION: Final = 1
DEFAULT_BINS: Final = 10
MAX_CATEGORIES: Final = 50

Kind = Literal["numeric", "categorical"]


class BaselineError(ValueError):
    """A baseline file that does not follow the format; the message names the field."""


@dataclass(frozen=True)
class FeatureBaseline:
    name: str
    kind: Kind
    proportions: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    missing_ratio: float = 0.0

    @property
    def bins(self) -> int:
        return len(self.proportions)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            out["edges"] = list(self.edges)
        else:
            out["categories"] = list(self.categories)
        out["proportions"] = list(self.proportions)
        out["missing_ratio"] = self.missing_ratio
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> FeatureBaseline:
        name = raw.get("name")
        kind = raw.get("kind")
        if not isinstance(name, str) or not name:
            raise BaselineError(f"{where}.name: a non-empty string is required")
        props = _floats(raw.get("proportions"), f"{where}.proportions")
        missing = raw.get("missing_ratio", 0.0)
        if not isinstance(missing, int | float) or not 0.0 <= missing <= 1.0:
            raise BaselineError(f"{where}.missing_ratio: a number in [0, 1] is required")
        if any(p < 0 for p in props) or not math.isclose(sum(props), 1.0, abs_tol=1e-6):
            raise BaselineError(f"{where}.proportions: non-negative numbers summing to 1")
        if kind == "numeric":
            edges = _floats(raw.get("edges"), f"{where}.edges")
            if len(edges) + 1 != len(props):
                raise BaselineError(f"{where}: numeric features need len(edges) + 1 proportions")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise BaselineError(f"{where}.edges: must be strictly increasing")
            return cls(name, "numeric", props, edges=edges, missing_ratio=float(missing))
        if kind == "categorical":
            cats = raw.get("categories")
            if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
                raise BaselineError(f"{where}.categories: a list of strings is required")
            if len(cats) + 1 != len(props):
                raise BaselineError(
                    f"{where}: categorical features need len(categories) + 1 proportions "
                    "(the last one is for unseen categories)"
                )
            return cls(
                name, "categorical", props, categories=tuple(cats), missing_ratio=float(missing)
            )
        raise BaselineError(f"{where}.kind: 'numeric' or 'categorical', got {kind!r}")


@dataclass(frozen=True)
class DriftBaseline:
    features: tuple[FeatureBaseline, ...]
    rows: int
    target: FeatureBaseline | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "rows": self.rows,
            "features": [f.to_dict() for f in self.features],
        }
        if self.target is not None:
            out["target"] = self.target.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, raw: Any) -> DriftBaseline:
        if not isinstance(raw, dict):
            raise BaselineError("baseline: a JSON object is required")
        if raw.get("format") != FORMAT:
            raise BaselineError(f"format: expected {FORMAT!r}, got {raw.get('format')!r}")
        if raw.get("version") != FORMAT_VERSION:
            raise BaselineError(f"version: {raw.get('version')!r} is not supported (1 is)")
        feats = raw.get("features")
        if not isinstance(feats, list) or not feats:
            raise BaselineError("features: a non-empty list is required")
        parsed = tuple(FeatureBaseline.from_dict(f, f"features[{i}]") for i, f in enumerate(feats))
        names = [f.name for f in parsed]
        if len(set(names)) != len(names):
            raise BaselineError("features: names must be unique")
        target = raw.get("target")
        rows = raw.get("rows", 0)
        return cls(
            features=parsed,
            rows=int(rows) if isinstance(rows, int) else 0,
            target=FeatureBaseline.from_dict(target, "target") if target is not None else None,
        )

    @classmethod
    def from_json(cls, text: str) -> DriftBaseline:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BaselineError(f"baseline is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)


def _floats(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise BaselineError(f"{where}: a non-empty list of numbers is required")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in value):
        raise BaselineError(f"{where}: finite numbers only")
    return tuple(float(v) for v in value)


def feature_baseline(
    name: str, values: Sequence[Any] | Any, bins: int = DEFAULT_BINS, categorical: bool = False
) -> FeatureBaseline:
    """Bin one column: quantile edges for numbers, the most frequent categories otherwise (or
    when `categorical`, e.g. integer class labels)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf" and not categorical:
        x = arr.astype(float)
        present = x[~np.isnan(x)]
        missing = 1.0 - len(present) / len(x) if len(x) else 0.0
        if len(present) == 0:
            raise ValueError(f"feature {name!r}: no non-missing values to build a baseline from")
        qs = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(qs)
        counts = np.bincount(
            np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1
        )
        return FeatureBaseline(
            name,
            "numeric",
            tuple(float(c) / len(present) for c in counts),
            edges=tuple(float(e) for e in edges),
            missing_ratio=float(missing),
        )
    objs = [
        v for v in arr.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))
    ]
    missing = 1.0 - len(objs) / len(arr) if len(arr) else 0.0
    if not objs:
        raise ValueError(f"feature {name!r}: no non-missing values to build a baseline from")
    uniq, counts = np.unique(np.asarray([str(v) for v in objs]), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
    cats = tuple(str(uniq[i]) for i in order)
    kept = [float(counts[i]) / len(objs) for i in order]
    return FeatureBaseline(
        name,
        "categorical",
        (*kept, max(0.0, 1.0 - sum(kept))),
        categories=cats,
        missing_ratio=float(missing),
    )


def build_drift_baseline(
    df: Any,
    *,
    features: Sequence[str] | None = None,
    target: Sequence[Any] | Any | None = None,
    bins: int = DEFAULT_BINS,
) -> DriftBaseline:
    """A baseline from a pandas DataFrame of training features (and, optionally, the target)."""
    if bins < 2:
        raise ValueError("bins must be at least 2")
    names = list(features) if features is not None else [str(c) for c in df.columns]
    feats = tuple(feature_baseline(n, df[n].to_numpy(), bins) for n in names)
    tgt = None
    if target is not None:
        tgt = feature_baseline("target", target, bins, categorical=_is_class_label(target))
    return DriftBaseline(features=feats, rows=len(df), target=tgt)


def _is_class_label(target: Any) -> bool:
    """Class labels rather than a regression target: anything but floats, when there are at
    most MAX_CATEGORIES distinct values (integer labels 0..k-1 of scikit-learn classifiers)."""
    arr = np.asarray(target)
    if arr.dtype.kind in "fc" or len(arr) == 0:
        return False
    return len(np.unique(arr.astype(str))) <= MAX_CATEGORIES


def log_drift_baseline(
    df: Any,
    *,
    model_id: str | None = None,
    target: Sequence[Any] | Any | None = None,
    features: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
) -> DriftBaseline:
    """Compute a baseline and store it as `drift_baseline.json` in a logged model's artifacts.

    `model_id` is `ModelInfo.model_id` from `mlflow.<flavor>.log_model`; without it the last
    model logged in this process is used (`mlflow.last_logged_model()`). Inside an active run,
    the run also gets the tag `modeldeploy.io/drift-baseline` ({"modelId", "artifact",
    "features", "rows"}), so the lineage of a run names the baseline next to its datasets.
    """
    from mlflow import MlflowClient, active_run, last_logged_model, set_tag

    if model_id is None:
        last = last_logged_model()
        if last is None:
            raise ValueError("no model_id given and no model logged in this process yet")
        model_id = str(last.model_id)
    baseline = build_drift_baseline(df, features=features, target=target, bins=bins)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, BASELINE_FILE)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(baseline.to_json())
        MlflowClient().log_model_artifact(model_id, path)
    if active_run() is not None:
        set_tag(names.TAG_DRIFT_BASELINE, lineage_tag(baseline, model_id))
    return baseline


def lineage_tag(baseline: DriftBaseline, model_id: str) -> str:
    """The run tag's value: where the baseline is and its size, as compact JSON."""
    record = {
        "modelId": model_id,
        "artifact": BASELINE_FILE,
        "features": len(baseline.features),
        "rows": baseline.rows,
    }
    return json.dumps(record, separators=(",", ":"))
