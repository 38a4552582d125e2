"""Phases, condition types, reasons and event reasons: one place, so tests and docs name the
same strings as the code that sets them."""

from typing import Final

# status.phase
RESOLVING: Final = "Resolving"
PROGRESSING: Final = "Progressing"
AWAITING_APPROVAL: Final = "AwaitingApproval"
HEALTHY: Final = "Healthy"
DEGRADED: Final = "Degraded"
ROLLING_BACK: Final = "RollingBack"
ROLLED_BACK: Final = "RolledBack"
FAILED: Final = "Failed"
PHASES: Final = (
    RESOLVING,
    PROGRESSING,
    AWAITING_APPROVAL,
    HEALTHY,
    DEGRADED,
    ROLLING_BACK,
    ROLLED_BACK,
    FAILED,
)

# condition types
READY: Final = "Ready"
COND_PROGRESSING: Final = "Progressing"
COND_DEGRADED: Final = "Degraded"
REGISTRY_REACHABLE: Final = "RegistryReachable"
MONITORING_READY: Final = "MonitoringReady"
COND_ROLLED_BACK: Final = "RolledBack"
# Only with spec.model.requireApproval: whether the selector's version is approved for the stage.
COND_APPROVED: Final = "Approved"
# kstatus' abnormal-true conditions (sigs.k8s.io/cli-utils/pkg/kstatus), read by Flux and by the
# Argo CD health check in gitops/: present and True only while the operator works on the spec
# (Reconciling) or cannot go on without a person (Stalled); absent otherwise, never both.
COND_RECONCILING: Final = "Reconciling"
COND_STALLED: Final = "Stalled"

# condition reasons
MODEL_SERVING: Final = "ModelServing"
ROLLOUT_IN_PROGRESS: Final = "RolloutInProgress"
ROLLOUT_COMPLETE: Final = "RolloutComplete"
PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
MODEL_NOT_FOUND: Final = "ModelVersionNotFound"
REGISTRY_UNREACHABLE: Final = "RegistryUnreachable"
REGISTRY_OK: Final = "RegistryAnswered"
CREDENTIALS_MISSING: Final = "CredentialsSecretMissing"
NOTHING_SERVING: Final = "NothingServing"
AS_EXPECTED: Final = "AsExpected"
MONITORING_APPLIED: Final = "MonitoringObjectsApplied"
MONITORING_CRDS_MISSING: Final = "MonitoringCRDsMissing"
MONITORING_DISABLED: Final = "MonitoringDisabled"
SCALED_TO_ZERO: Final = "ScaledToZero"
ROLLBACK_DISABLED: Final = "RollbackDisabled"
NO_HEALTHY_VERSION: Final = "NoHealthyVersion"
ROLLED_BACK_REASON: Final = "RolledBack"
REJECTION_CLEARED: Final = "RejectionCleared"
# Reconciling's reason while a rollback's target rolls out (the phase's name).
ROLLING_BACK_REASON: Final = "RollingBack"
# pre-flight: why a version the pods do not run yet is not rolled out (registry/preflight.py)
VERSION_NOT_IN_REGISTRY: Final = "VersionNotInRegistry"
ARTIFACTS_MISSING: Final = "ModelArtifactsMissing"
MODEL_NOT_SERVABLE: Final = "ModelNotServable"
# ... and their messages ("version 4 cannot be rolled out: <message>")
MSG_NOT_IN_REGISTRY: Final = "model {model!r} has no version {version} in the registry"
MSG_ARTIFACTS_MISSING: Final = "its MLmodel file is not in the artifact store"
MSG_MLMODEL_UNREADABLE: Final = "its MLmodel file is not a YAML mapping"
INVALID_SPEC: Final = "InvalidSpec"
# approval gate (spec.model.requireApproval)
APPROVAL_GRANTED: Final = "ApprovalGranted"
APPROVAL_MISSING: Final = "AwaitingApproval"
SERVING_UNAPPROVED: Final = "ServingWithoutApproval"
# history reason of a version found serving when the status held no history (wiped, restored)
ADOPTED: Final = "found serving with no recorded history"

# history outcomes
OUTCOME_PROGRESSING: Final = "Progressing"
OUTCOME_SUCCEEDED: Final = "Succeeded"
OUTCOME_FAILED: Final = "Failed"
OUTCOME_SUPERSEDED: Final = "Superseded"
OUTCOME_ROLLED_BACK: Final = "RolledBack"

# Kubernetes Event reasons
EV_ROLLOUT_STARTED: Final = "RolloutStarted"
EV_ROLLOUT_SUCCEEDED: Final = "RolloutSucceeded"
EV_ROLLOUT_FAILED: Final = "RolloutFailed"
EV_PHASE_CHANGED: Final = "PhaseChanged"
EV_REGISTRY_UNREACHABLE: Final = "RegistryUnreachable"
EV_REGISTRY_RECOVERED: Final = "RegistryReachable"
EV_MODEL_NOT_FOUND: Final = "ModelVersionNotFound"
EV_MONITORING_SKIPPED: Final = "MonitoringSkipped"
EV_ROLLED_BACK: Final = "RolledBack"
EV_ALERT_FIRING: Final = "AlertFiring"
EV_REJECTION_CLEARED: Final = "RejectionCleared"
EV_PREFLIGHT_FAILED: Final = "PreflightFailed"
EV_APPROVAL_REQUIRED: Final = "ApprovalRequired"
EV_APPROVED: Final = "Approved"
EV_REGISTRY_TAG_FAILED: Final = "RegistryTagFailed"

# Progressive delivery (spec.strategy; rollout/progressive.py, rollout/analysis.py).
# status.canary.state
CANARY_SCALING: Final = "Scaling"
CANARY_ANALYSING: Final = "Analysing"
CANARY_HOLDING: Final = "Holding"
CANARY_PROMOTING: Final = "Promoting"
# status.canary.analysis[].verdict
VERDICT_PASSED: Final = "Passed"
VERDICT_FAILED: Final = "Failed"
VERDICT_INCONCLUSIVE: Final = "Inconclusive"
VERDICT_UNAVAILABLE: Final = "Unavailable"
# The Analysis condition (present while a canary or preview runs) and its reasons.
COND_ANALYSIS: Final = "Analysis"
ANALYSIS_PASSED: Final = "AnalysisPassed"
ANALYSIS_FAILED: Final = "AnalysisFailed"
ANALYSIS_INCONCLUSIVE: Final = "AnalysisInconclusive"
ANALYSIS_UNAVAILABLE: Final = "AnalysisUnavailable"
AWAITING_ANALYSIS: Final = "AwaitingAnalysis"
TRAFFIC_ROUTE_INVALID: Final = "TrafficRouteInvalid"
# Events
EV_CANARY_STARTED: Final = "CanaryStarted"
EV_CANARY_STEP: Final = "CanaryStep"
EV_CANARY_PROMOTING: Final = "CanaryPromoting"
EV_CANARY_HOLDING: Final = "CanaryHolding"

HISTORY_LIMIT: Final = 10
