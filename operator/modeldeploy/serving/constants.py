"""Names used only by the serving runtime (shared metric names live in modeldeploy.names)."""

from typing import Final

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
