"""Training-side helpers: what a training run records so serving can watch the model later and
lineage can say what it was trained on (docs/tracking.md).

* `log_dataset`: a dataset version (a hash over all of the data) as an MLflow dataset input
  and a run tag.
* `log_preprocessing` / `read_preprocessing`: the preprocessing steps as params, a JSON
  artifact and a run tag.
* `log_drift_baseline`: the serving baseline, in the logged model's artifacts.
* `pipeline_stage` / `record_retraining_trigger`: a batch stage's outcome, duration, rows and
  data-quality checks, and retraining triggers, pushed to a Prometheus Pushgateway.
"""

from modeldeploy.tracking.baseline import (
    BASELINE_FILE,
    BaselineError,
    DriftBaseline,
    FeatureBaseline,
    build_drift_baseline,
    log_drift_baseline,
)
from modeldeploy.tracking.dataset import describe_dataset, log_dataset
from modeldeploy.tracking.pipeline import (
    PipelineStage,
    pipeline_stage,
    record_retraining_trigger,
)
from modeldeploy.tracking.preprocessing import (
    describe_preprocessing,
    log_preprocessing,
    read_preprocessing,
)
from modeldeploy.tracking.records import (
    DatasetError,
    DatasetVersion,
    Preprocessing,
    PreprocessingError,
    PreprocessingStep,
    SchemaField,
)

__all__ = [
    "BASELINE_FILE",
    "BaselineError",
    "DatasetError",
    "DatasetVersion",
    "DriftBaseline",
    "FeatureBaseline",
    "PipelineStage",
    "Preprocessing",
    "PreprocessingError",
    "PreprocessingStep",
    "SchemaField",
    "build_drift_baseline",
    "describe_dataset",
    "describe_preprocessing",
    "log_dataset",
    "log_drift_baseline",
    "log_preprocessing",
    "pipeline_stage",
    "read_preprocessing",
    "record_retraining_trigger",
]
