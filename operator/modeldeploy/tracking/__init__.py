"""Training-side helpers: what a training run records so serving can watch the model later."""

from modeldeploy.tracking.baseline import (
    BASELINE_FILE,
    BaselineError,
    DriftBaseline,
    FeatureBaseline,
    build_drift_baseline,
    log_drift_baseline,
)

__all__ = [
    "BASELINE_FILE",
    "BaselineError",
    "DriftBaseline",
    "FeatureBaseline",
    "build_drift_baseline",
    "log_drift_baseline",
]
