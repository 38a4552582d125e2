"""Names shared by the serving runtime, the alert-rule renderer, the operator and the dashboards:
every metric, label, alert and tag name, and the models:/ URI of a version.

A metric, label or alert name is written once, here, so that renaming it cannot leave a rule
matching nothing or a dashboard panel empty. Nothing in this module imports anything else.
"""

from typing import Final

# API group of the custom resource and the prefix of every label/annotation the operator sets.
GROUP: Final = "modeldeploy.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "modeldeployments"
KIND: Final = "ModelDeployment"
FIELD_MANAGER: Final = "modeldeploy-operator"

# Labels on every serving pod (and so, through the ServiceMonitor, on every scraped series).
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MODELDEPLOYMENT: Final = f"{GROUP}/modeldeployment"
LABEL_MODEL_NAME: Final = f"{GROUP}/model-name"
LABEL_MODEL_VERSION: Final = f"{GROUP}/model-version"
# stable: the pods of the serving version; canary: those of a canary or blue-green preview.
LABEL_TRACK: Final = f"{GROUP}/track"
TRACK_STABLE: Final = "stable"
TRACK_CANARY: Final = "canary"

# Prometheus label names. namespace/modeldeployment/model_version identify the serving version
# an alert is about; the rollback logic matches alerts by exactly these three.
PROM_NAMESPACE: Final = "namespace"
PROM_MODELDEPLOYMENT: Final = "modeldeployment"
PROM_MODEL_NAME: Final = "model_name"
PROM_MODEL_VERSION: Final = "model_version"

# Serving runtime metrics (modeldeploy serve). Each series carries model_name and model_version.
PREDICTION_LATENCY: Final = "prediction_latency_seconds"  # histogram
PREDICTION_REQUESTS: Final = "prediction_requests_total"  # counter, label `code`
PREDICTION_ERRORS: Final = "prediction_errors_total"  # counter, label `error_type`
PREDICTIONS_IN_FLIGHT: Final = "prediction_requests_in_flight"  # gauge
MODEL_VERSION_INFO: Final = "model_version_info"  # gauge = 1, labels model_name/version/run_id
MODEL_LOAD_SECONDS: Final = "model_load_duration_seconds"  # gauge
PREDICTION_CONFIDENCE: Final = "prediction_confidence"  # histogram of the top class probability
PREDICTION_CLASS: Final = "prediction_class_total"  # counter, label `class`
PREDICTION_VALUE: Final = "prediction_value"  # histogram of regression outputs
PREDICTION_BATCH_SIZE: Final = "prediction_batch_size"  # histogram: requests per model call
# Serving runtime variables the operator renders from spec.serving.batching.
BATCH_MAX_SIZE_ENV: Final = "MODELDEPLOY_BATCH_MAX_SIZE"
BATCH_WINDOW_ENV: Final = "MODELDEPLOY_BATCH_WINDOW_MS"
# prometheus_client's process collector, on every serving pod: the serving process's own CPU and
# memory, with the scrape's namespace/modeldeployment/pod labels (no model labels).
PROCESS_CPU: Final = "process_cpu_seconds_total"
PROCESS_MEMORY: Final = "process_resident_memory_bytes"
LABEL_POD: Final = "pod"
LABEL_CODE: Final = "code"
LABEL_ERROR_TYPE: Final = "error_type"
LABEL_FEATURE: Final = "feature"
LABEL_CLASS: Final = "class"

# Model quality as counts that add up across pods; queries divide (the recording rules below).
# Input drift: rows per feature per bin of the training baseline (bin: numeric bins by index,
# categorical ones by category, then BIN_OTHER; BIN_MISSING for null/NaN/absent; BIN_PRESENT for
# features without a baseline), and each pod exports the baseline's shares beside them.
FEATURE_BIN_ROWS: Final = "feature_bin_rows_total"  # counter, labels `feature`, `bin`
FEATURE_BASELINE_SHARE: Final = "feature_baseline_share"  # gauge, labels `feature`, `bin`
TARGET_BASELINE_SHARE: Final = "target_baseline_share"  # gauge, label `class` (classifiers)
LABEL_BIN: Final = "bin"
# PSI floors both shares at this before the log ratio, so an empty bin on either side gives a
# large but finite PSI (1e-4 keeps one empty bin near 1): serving.drift.psi and the rules alike.
PSI_EPSILON: Final = 1e-4
BIN_MISSING: Final = "__missing__"
BIN_OTHER: Final = "__other__"
BIN_PRESENT: Final = "__present__"
# Ground truth from /feedback. Classifiers: labelled rows by (true, predicted) class, and
# `correct` = "true"/"false" since PromQL cannot compare two labels. Regressors: error sums and
# the labels' histogram (buckets: the training target's edges, like prediction_value).
FEEDBACK_OUTCOMES: Final = "prediction_feedback_outcomes_total"
FEEDBACK_ROWS: Final = "prediction_feedback_rows_total"  # labelled rows, every task
FEEDBACK_ABS_ERROR: Final = "prediction_feedback_absolute_error_total"  # sum of |pred - true|
FEEDBACK_SQUARED_ERROR: Final = "prediction_feedback_squared_error_total"  # sum of (pred-true)²
FEEDBACK_LABEL_VALUE: Final = "prediction_feedback_label_value"  # histogram, regressors
LABEL_TRUE_CLASS: Final = "true_class"
LABEL_PREDICTED_CLASS: Final = "predicted_class"
LABEL_CORRECT: Final = "correct"

# Recording rules of the operator's PrometheusRule (render/quality_rules.py), one series per
# (namespace, modeldeployment, model_version[, feature|class]) over spec.monitoring.qualityWindow.
REC_FEATURE_SHARE: Final = "modeldeploy:feature_bin_share"  # by feature, bin
REC_FEATURE_ROWS: Final = "modeldeploy:feature_rows:increase"  # non-missing rows, by feature
REC_FEATURE_PSI: Final = "modeldeploy:feature_drift_psi"  # by feature
REC_FEATURE_MISSING: Final = "modeldeploy:feature_missing_ratio"  # by feature
REC_CLASS_SHARE: Final = "modeldeploy:prediction_class_share"  # predicted-class shares, by class
REC_OUTPUT_PSI: Final = "modeldeploy:output_drift_psi"  # predicted classes vs training labels
REC_LABEL_SHARE: Final = "modeldeploy:feedback_label_share"  # true-label shares, by class
REC_TARGET_PSI: Final = "modeldeploy:target_drift_psi"  # feedback labels vs training labels
REC_FEEDBACK_ROWS: Final = "modeldeploy:feedback_rows:increase"
REC_TRUE_POSITIVES: Final = "modeldeploy:feedback_true_positives:increase"  # by class
REC_PREDICTED: Final = "modeldeploy:feedback_predicted:increase"  # labelled rows by predicted
REC_LABELLED: Final = "modeldeploy:feedback_labelled:increase"  # labelled rows by true class
REC_CLASS_PRECISION: Final = "modeldeploy:feedback_precision:by_class"
REC_CLASS_RECALL: Final = "modeldeploy:feedback_recall:by_class"
REC_CLASS_F1: Final = "modeldeploy:feedback_f1:by_class"
REC_ACCURACY: Final = "modeldeploy:feedback_accuracy"
REC_PRECISION: Final = "modeldeploy:feedback_precision"  # macro average over classes seen
REC_RECALL: Final = "modeldeploy:feedback_recall"
REC_F1: Final = "modeldeploy:feedback_f1"
REC_MAE: Final = "modeldeploy:feedback_mae"  # regressors
REC_RMSE: Final = "modeldeploy:feedback_rmse"

# Operator metrics (modeldeploy operator).
OP_ROLLOUT_STATUS: Final = "modeldeploy_rollout_status"
OP_MODEL_VERSION_INFO: Final = "modeldeploy_model_version_info"
OP_ROLLOUTS_STARTED: Final = "modeldeploy_rollouts_started_total"
OP_ROLLOUTS_COMPLETED: Final = "modeldeploy_rollouts_completed_total"
# The deployment stage of the pipeline, as the pushed stages report theirs: per ModelDeployment
# and outcome (Succeeded, Failed, Superseded), when the last such rollout ended and its duration.
OP_ROLLOUT_LAST_COMPLETED: Final = "modeldeploy_rollout_last_completed_timestamp_seconds"
OP_ROLLOUT_LAST_DURATION: Final = "modeldeploy_rollout_last_duration_seconds"
OP_ROLLBACKS: Final = "modeldeploy_rollbacks_total"
# Canary analyses, by verdict (Passed, Failed, Inconclusive, Unavailable).
OP_CANARY_ANALYSES: Final = "modeldeploy_canary_analyses_total"
OP_ALERT_TO_ROLLBACK: Final = "modeldeploy_alert_to_rollback_seconds"
OP_ALERTS_RECEIVED: Final = "modeldeploy_alert_notifications_total"
# MLflow registry webhook deliveries by outcome: accepted, ignored (tags the operator writes),
# and the refusals unsigned, forged, stale, future, replayed, malformed.
OP_REGISTRY_WEBHOOKS: Final = "modeldeploy_registry_webhooks_total"
WEBHOOK_ACCEPTED: Final = "accepted"
WEBHOOK_IGNORED: Final = "ignored"
WEBHOOK_UNSIGNED: Final = "unsigned"  # a signature, delivery id or timestamp header missing
WEBHOOK_FORGED: Final = "forged"  # the signature does not match (or the timestamp is no number)
WEBHOOK_STALE: Final = "stale"  # older than MAX_WEBHOOK_SKEW_SECONDS
WEBHOOK_FUTURE: Final = "future"  # further ahead of our clock than MAX_WEBHOOK_FUTURE_SECONDS
WEBHOOK_REPLAYED: Final = "replayed"  # a delivery id already accepted
WEBHOOK_MALFORMED: Final = "malformed"  # signed, but no data.name
OP_RECONCILE_SECONDS: Final = "modeldeploy_reconcile_duration_seconds"
OP_REGISTRY_REQUESTS: Final = "modeldeploy_registry_requests_total"
OP_REGISTRY_SECONDS: Final = "modeldeploy_registry_request_duration_seconds"
# High availability: 1 on the replica that holds the leader Lease, 0 on standbys; webhook
# deliveries a standby passed on to the leader, by endpoint and outcome (forwarded, failed).
OP_LEADER: Final = "modeldeploy_operator_leader"
OP_WEBHOOK_FORWARDS: Final = "modeldeploy_webhook_forwards_total"
# Saturation of the reconcile queue (controller-runtime's workqueue_depth and
# workqueue_queue_duration_seconds): keys ready and waiting for a worker, and how long each
# waited, by `priority` (high: changes and events; low: periodic checks).
# Requests the operator sent to the API server, by `method` and `resource` (controller-runtime's
# rest_client_requests_total): non-GET methods are its API writes, none while nothing changes.
OP_KUBE_REQUESTS: Final = "modeldeploy_kube_requests_total"
OP_WORKQUEUE_DEPTH: Final = "modeldeploy_workqueue_depth"
OP_WORKQUEUE_WAIT: Final = "modeldeploy_workqueue_queue_duration_seconds"
# On the leader-election Lease: the URL at which the leader's webhook endpoints answer.
ANNOTATION_LEADER_URL: Final = f"{GROUP}/leader-url"
# On every child: the hash of the manifest the operator last applied to it, so an unchanged
# child is not applied again (controller/children.py).
ANNOTATION_APPLIED_HASH: Final = f"{GROUP}/applied-hash"

# The `alert` label of modeldeploy_rollbacks_total (and the RolledBack reason, the MLflow
# rejected tag) when a canary's analysis, not an alert, rolled it back.
CANARY_ANALYSIS: Final = "CanaryAnalysis"

# Alert names of the default PrometheusRule.
ALERT_HIGH_ERROR_RATE: Final = "ModelHighErrorRate"
ALERT_HIGH_LATENCY: Final = "ModelHighLatency"
ALERT_DRIFT: Final = "ModelInputDrift"
ALERT_LOW_ACCURACY: Final = "ModelLowAccuracy"

# MLflow tags modeldeploy writes and reads (docs/governance.md and docs/tracking.md show them).
# Keys use only characters MLflow allows in tag keys (letters, digits, _ - . / : and space).
TAG_PREFIX: Final = f"{GROUP}/"
# On model versions. The operator writes only TAG_REJECTED and TAG_AUDIT keys for its own
# actions (deploy, rollback); it acts on TAG_APPROVED keys, which only people write.
TAG_REJECTED: Final = f"{GROUP}/rejected"  # "ns/name: Alert at time", by the rollback
TAG_APPROVED: Final = f"{GROUP}/approved."  # + stage → JSON {"by", "at", "note"}
TAG_PROMOTED: Final = f"{GROUP}/promoted."  # + stage → JSON {"by", "at", "from", "previous"}
TAG_AUDIT: Final = f"{GROUP}/audit."  # + "<yyyymmddThhmmss.fffZ>.<action>.<nonce>" → JSON
# On registered models: which aliases are stages and which stages need an approval.
TAG_POLICY: Final = f"{GROUP}/policy"  # JSON {"stages": [...], "requireApproval": [...]}
# On training runs (modeldeploy.tracking).
TAG_DATASET: Final = f"{GROUP}/dataset."  # + dataset name → JSON dataset record
TAG_PREPROCESSING: Final = f"{GROUP}/preprocessing"  # JSON summary; full steps in the artifact
TAG_DRIFT_BASELINE: Final = f"{GROUP}/drift-baseline"  # JSON {"modelId", "artifact", ...}
PREPROCESSING_ARTIFACT: Final = "modeldeploy/preprocessing.json"
PREPROCESSING_PARAMS: Final = "preprocessing"  # run params "preprocessing.<step path>.<param>"
# MLflow's own run tag for the code version (set by `mlflow run` and by autologging in a repo).
MLFLOW_GIT_COMMIT_TAG: Final = "mlflow.source.git.commit"

# --- Pipeline monitoring (modeldeploy.tracking.pipeline; rules: render/pipeline_rules.py) -------
# Batch jobs push these to a Prometheus Pushgateway, one group per (job, pipeline, stage): the
# grouping key's labels land on every series, so the metrics themselves carry only `check` or
# `metric`.
# Pushes are POSTs (pushadd): a push replaces the series of the metric names it sends and keeps
# the others, so a failed run keeps the last success timestamp of an earlier run.
PIPELINE_JOB: Final = "modeldeploy-pipeline"  # value of the `job` grouping label
PIPELINE_STAGE_DURATION: Final = "modeldeploy_pipeline_stage_duration_seconds"  # last run
PIPELINE_STAGE_SUCCESS: Final = "modeldeploy_pipeline_stage_last_run_success"  # 1 ok, 0 failed
PIPELINE_STAGE_LAST_RUN: Final = "modeldeploy_pipeline_stage_last_run_timestamp_seconds"
PIPELINE_STAGE_LAST_SUCCESS: Final = "modeldeploy_pipeline_stage_last_success_timestamp_seconds"
PIPELINE_STAGE_LAST_FAILURE: Final = "modeldeploy_pipeline_stage_last_failure_timestamp_seconds"
PIPELINE_STAGE_ROWS_IN: Final = "modeldeploy_pipeline_stage_rows_in"  # gauge, last run
PIPELINE_STAGE_ROWS_OUT: Final = "modeldeploy_pipeline_stage_rows_out"  # gauge, last run
PIPELINE_STAGE_EXPECTED_PERIOD: Final = "modeldeploy_pipeline_stage_expected_period_seconds"
PIPELINE_CHECK_PASSED: Final = "modeldeploy_pipeline_data_quality_check_passed"  # 1 / 0
PIPELINE_CHECK_VALUE: Final = "modeldeploy_pipeline_data_quality_check_value"  # optional figure
PIPELINE_STAGE_METRIC: Final = "modeldeploy_pipeline_stage_metric"  # gauge, label `metric`
# One group per (job, pipeline, reason); the value is when that reason last triggered (a counter
# would restart at 0 in every short-lived process; count triggers with changes(...[1d])).
PIPELINE_RETRAINING_TRIGGER: Final = "modeldeploy_pipeline_retraining_trigger_timestamp_seconds"
PIPELINE_LABEL_JOB: Final = "job"
PIPELINE_LABEL_PIPELINE: Final = "pipeline"
PIPELINE_LABEL_STAGE: Final = "stage"
PIPELINE_LABEL_CHECK: Final = "check"
PIPELINE_LABEL_METRIC: Final = "metric"
PIPELINE_LABEL_REASON: Final = "reason"
# Alert names of the pipeline rules.
ALERT_PIPELINE_STAGE_FAILED: Final = "ModelPipelineStageFailed"
ALERT_PIPELINE_STAGE_STALE: Final = "ModelPipelineStageStale"
ALERT_PIPELINE_DATA_QUALITY_FAILED: Final = "ModelPipelineDataQualityFailed"
# MLflow run metric/tag prefix: "pipeline.<stage>." (e.g. pipeline.etl.rows_in).
PIPELINE_MLFLOW_PREFIX: Final = "pipeline."

# --- Used only by the serving runtime (its /feedback, refusals and error types) -----------------
# Ground-truth feedback metrics (only the serving runtime and its docs use these).
FEEDBACK_TOTAL: Final = "prediction_feedback_total"  # counter, label `outcome`
FEEDBACK_PENDING: Final = "prediction_feedback_pending_requests"  # gauge
FEEDBACK_EVICTED: Final = "prediction_feedback_evicted_total"  # counter, label `reason`
LABEL_OUTCOME: Final = "outcome"
LABEL_REASON: Final = "reason"
LABEL_RUN_ID: Final = "run_id"

# Requests refused outside /invocations (which has prediction_requests_total): /feedback, the
# read-only endpoints, unknown paths. Labels `path` (a known route or "other") and `code`.
HTTP_REFUSED: Final = "http_requests_refused_total"
LABEL_PATH: Final = "path"
OTHER_PATH: Final = "other"

# error_type values of prediction_errors_total. 4xx ones are the client's (the error-rate rule
# counts only 5xx); model_error, timeout and internal_error are the server's.
ERR_BAD_INPUT: Final = "bad_input"
ERR_TOO_LARGE: Final = "payload_too_large"
ERR_MEDIA_TYPE: Final = "unsupported_media_type"
ERR_METHOD: Final = "method_not_allowed"
ERR_REQUEST_TIMEOUT: Final = "request_timeout"  # 408: the body did not arrive in time
ERR_CLIENT_GONE: Final = "client_disconnected"  # 499: counted only, nothing is sent
ERR_MODEL: Final = "model_error"
ERR_TIMEOUT: Final = "timeout"
ERR_INTERNAL: Final = "internal_error"  # a bug of the server, never the input's or the model's

REQUEST_ID_HEADER: Final = "x-request-id"
REQUEST_ID_BODY_KEY: Final = "request_id"


# --- The registry's URI of one model version ------------------------------------------------------
MODELS_SCHEME: Final = "models:/"


def model_version_uri(name: str, version: str) -> str:
    """`models:/<name>/<version>`: the pinned URI serving pods load, whatever alias moves."""
    return f"{MODELS_SCHEME}{name}/{version}"
