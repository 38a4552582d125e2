"""`modeldeploy serve` configuration: flags, each with an environment variable as its default.

The operator configures serving pods through the environment (MODEL_URI, MODEL_NAME,
MODEL_VERSION, PORT and the MODELDEPLOY_* variables below); a person running the server by hand
uses the flags. Parsed once, here, into a frozen dataclass.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from modeldeploy.names import BATCH_MAX_SIZE_ENV, BATCH_WINDOW_ENV

TrustPolicy = Literal["never", "registry", "always"]
TaskSetting = Literal["auto", "classification", "regression"]

DEFAULT_SCHEMES = ("models", "runs", "file")
DEFAULT_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServeConfig:
    model_uri: str
    host: str = "0.0.0.0"
    port: int = 8080
    model_name: str | None = None
    model_version: str | None = None
    allowed_schemes: tuple[str, ...] = DEFAULT_SCHEMES
    trust_model_code: TrustPolicy = "never"
    max_body_bytes: int = 16 * 1024 * 1024
    timeout: float = 60.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    allow_non_finite: bool = False
    threads: int = 4
    drift: bool = True
    baseline: str | None = None
    confidence: bool = True
    confidence_sample: float | None = None  # None: every fast-path request, 1 in 10 others
    feedback: bool = True
    feedback_ttl: float = 3600.0
    feedback_max_rows: int = 100_000
    task: TaskSetting = "auto"
    request_id_in_body: bool = True
    strict_columns: bool = False
    log_payloads: bool = False
    log_level: str = "INFO"
    value_buckets: tuple[float, ...] = ()
    model_dir: str | None = None
    fast_path: bool = True
    batch_max_size: int = 32  # 1: no batching
    batch_window_ms: float = 1.0


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(sorted(float(p) for p in _csv(text)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from exc
    return vals


def _sample(text: str) -> float | None:
    return float(text) if text.strip() else None


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def e(name: str, default: str | None = None) -> str | None:
        return env.get(name, default)

    p = argparse.ArgumentParser(
        prog="modeldeploy serve",
        description="Serve an MLflow pyfunc model (MLflow scoring protocol) with Prometheus "
        "metrics, drift and feedback. Every flag defaults to the environment variable named "
        "in its help.",
    )
    p.add_argument(
        "--model-uri", default=e("MODEL_URI"), help="models:/, runs:/ or a path [MODEL_URI]"
    )
    p.add_argument("--host", default=e("MODELDEPLOY_HOST", "0.0.0.0"), help="[MODELDEPLOY_HOST]")
    p.add_argument("--port", type=int, default=int(e("PORT", "8080") or 8080), help="[PORT]")
    p.add_argument("--model-name", default=e("MODEL_NAME"), help="metric label [MODEL_NAME]")
    p.add_argument("--model-version", default=e("MODEL_VERSION"), help="[MODEL_VERSION]")
    p.add_argument(
        "--allowed-schemes",
        type=_csv,
        default=_csv(e("MODELDEPLOY_ALLOWED_URI_SCHEMES", ",".join(DEFAULT_SCHEMES)) or ""),
        help="URI schemes the server may load from; a plain path counts as 'file' "
        "[MODELDEPLOY_ALLOWED_URI_SCHEMES]",
    )
    p.add_argument(
        "--trust-model-code",
        choices=["never", "registry", "always"],
        default=e("MODELDEPLOY_TRUST_MODEL_CODE", "never"),
        help="load models whose loading runs stored code (pickled sklearn, cloudpickled or "
        "from-code python_model, code_paths): never; only from models:/ URIs (registry); always "
        "[MODELDEPLOY_TRUST_MODEL_CODE]",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=int(e("MODELDEPLOY_MAX_BODY_BYTES", str(16 * 1024 * 1024)) or 0),
        help="larger request bodies get 413 [MODELDEPLOY_MAX_BODY_BYTES]",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=float(e("MODELDEPLOY_PREDICT_TIMEOUT", "60") or 60),
        help="seconds a prediction may take before 504 [MODELDEPLOY_PREDICT_TIMEOUT]",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=float(e("MODELDEPLOY_HEADER_TIMEOUT", "10") or 10),
        help="seconds a connection may take to send a request's headers before it is closed "
        "[MODELDEPLOY_HEADER_TIMEOUT]",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=float(e("MODELDEPLOY_BODY_TIMEOUT", "30") or 30),
        help="seconds a request may take to send its body before 408 [MODELDEPLOY_BODY_TIMEOUT]",
    )
    p.add_argument(
        "--allow-non-finite",
        type=_bool,
        default=_bool(e("MODELDEPLOY_ALLOW_NON_FINITE", "false") or ""),
        help="null/NaN/Infinity inputs are valid for this model: a model exception on them is "
        "a model error (500), not bad input (400) [MODELDEPLOY_ALLOW_NON_FINITE]",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(e("MODELDEPLOY_THREADS", "4") or 4),
        help="prediction threads [MODELDEPLOY_THREADS]",
    )
    p.add_argument(
        "--drift",
        type=_bool,
        default=_bool(e("MODELDEPLOY_DRIFT", "true") or ""),
        help="count rows per feature per baseline bin (input drift, missing values) "
        "[MODELDEPLOY_DRIFT]",
    )
    p.add_argument(
        "--baseline",
        default=e("MODELDEPLOY_BASELINE"),
        help="drift baseline JSON (path or artifact URI) instead of the model's "
        "drift_baseline.json [MODELDEPLOY_BASELINE]",
    )
    p.add_argument(
        "--confidence",
        type=_bool,
        default=_bool(e("MODELDEPLOY_CONFIDENCE", "true") or ""),
        help="observe the top class probability of classifiers with predict_proba "
        "[MODELDEPLOY_CONFIDENCE]",
    )
    p.add_argument(
        "--confidence-sample",
        type=float,
        default=_sample(e("MODELDEPLOY_CONFIDENCE_SAMPLE", "") or ""),
        help="share of requests whose confidence is observed; default: every request the fast "
        "path serves (its predict_proba works on the parsed array, or is the prediction), and "
        "1 in 10 of the others, where predict_proba is a second call through pandas "
        "[MODELDEPLOY_CONFIDENCE_SAMPLE]",
    )
    p.add_argument(
        "--fast-path",
        type=_bool,
        default=_bool(e("MODELDEPLOY_FAST_PATH", "true") or ""),
        help="read requests straight into the array a scikit-learn model predicts on where the "
        "signature allows it; the same answers as MLflow's path, which serves everything else "
        "[MODELDEPLOY_FAST_PATH]",
    )
    p.add_argument(
        "--batch-max-size",
        type=int,
        default=int(e(BATCH_MAX_SIZE_ENV, "32") or 32),
        help="most requests predicted in one call to the model (fast path); 1 turns adaptive "
        "batching off [MODELDEPLOY_BATCH_MAX_SIZE]",
    )
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=float(e(BATCH_WINDOW_ENV, "1") or 0),
        help="milliseconds a batch may wait for requests already being read; a lone request "
        "never waits, and requests arriving while the model is busy form the next batch "
        "anyway [MODELDEPLOY_BATCH_WINDOW_MS]",
    )
    p.add_argument(
        "--feedback",
        type=_bool,
        default=_bool(e("MODELDEPLOY_FEEDBACK", "true") or ""),
        help="remember predictions for /feedback [MODELDEPLOY_FEEDBACK]",
    )
    p.add_argument(
        "--feedback-ttl",
        type=float,
        default=float(e("MODELDEPLOY_FEEDBACK_TTL", "3600") or 3600),
        help="seconds a prediction waits for its feedback [MODELDEPLOY_FEEDBACK_TTL]",
    )
    p.add_argument(
        "--feedback-max-rows",
        type=int,
        default=int(e("MODELDEPLOY_FEEDBACK_MAX_ROWS", "100000") or 100000),
        help="predicted rows kept for feedback [MODELDEPLOY_FEEDBACK_MAX_ROWS]",
    )
    p.add_argument(
        "--task",
        choices=["auto", "classification", "regression"],
        default=e("MODELDEPLOY_TASK", "auto"),
        help="what the model predicts; auto asks sklearn, else looks at the output type "
        "[MODELDEPLOY_TASK]",
    )
    p.add_argument(
        "--request-id-in-body",
        type=_bool,
        default=_bool(e("MODELDEPLOY_REQUEST_ID_IN_BODY", "true") or ""),
        help='add "request_id" next to "predictions" [MODELDEPLOY_REQUEST_ID_IN_BODY]',
    )
    p.add_argument(
        "--strict-columns",
        type=_bool,
        default=_bool(e("MODELDEPLOY_STRICT_COLUMNS", "false") or ""),
        help="refuse columns the signature does not name (MLflow ignores them) "
        "[MODELDEPLOY_STRICT_COLUMNS]",
    )
    p.add_argument(
        "--log-payloads",
        type=_bool,
        default=_bool(e("MODELDEPLOY_LOG_PAYLOADS", "false") or ""),
        help="log request bodies and predictions [MODELDEPLOY_LOG_PAYLOADS]",
    )
    p.add_argument(
        "--log-level", default=e("MODELDEPLOY_LOG_LEVEL", "INFO"), help="[MODELDEPLOY_LOG_LEVEL]"
    )
    p.add_argument(
        "--value-buckets",
        type=_floats,
        default=_floats(e("MODELDEPLOY_VALUE_BUCKETS", "") or ""),
        help="histogram buckets of regression outputs; default from the baseline's target "
        "[MODELDEPLOY_VALUE_BUCKETS]",
    )
    p.add_argument(
        "--model-dir",
        default=e("MODELDEPLOY_MODEL_DIR"),
        help="where the model is downloaded (default: a new directory under $TMPDIR or /tmp) "
        "[MODELDEPLOY_MODEL_DIR]",
    )
    return p


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ServeConfig:
    """Flags over environment over defaults; raises ConfigError for what argparse cannot check."""
    env = os.environ if env is None else env
    try:
        ns = _parser(env).parse_args(list(argv))
    except (argparse.ArgumentTypeError, ValueError) as exc:  # a malformed env default
        raise ConfigError(str(exc)) from exc
    if not ns.model_uri:
        raise ConfigError("no model: pass --model-uri or set MODEL_URI")
    if ns.trust_model_code not in {"never", "registry", "always"}:
        raise ConfigError(
            f"MODELDEPLOY_TRUST_MODEL_CODE: never, registry or always, not {ns.trust_model_code!r}"
        )
    if ns.task not in {"auto", "classification", "regression"}:
        raise ConfigError(f"MODELDEPLOY_TASK: auto, classification or regression, not {ns.task!r}")
    for name in (
        "port",
        "max_body_bytes",
        "threads",
        "feedback_max_rows",
        "batch_max_size",
    ):
        if getattr(ns, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    if ns.confidence_sample is not None and not 0.0 < ns.confidence_sample <= 1.0:
        raise ConfigError("--confidence-sample must be in (0, 1]")
    if ns.batch_window_ms < 0:
        raise ConfigError("--batch-window-ms must not be negative")
    for name in ("timeout", "feedback_ttl", "header_timeout", "body_timeout"):
        if getattr(ns, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    return ServeConfig(
        model_uri=ns.model_uri,
        host=ns.host,
        port=ns.port,
        model_name=ns.model_name or None,
        model_version=ns.model_version or None,
        allowed_schemes=tuple(s.lower() for s in ns.allowed_schemes),
        trust_model_code=ns.trust_model_code,
        max_body_bytes=ns.max_body_bytes,
        timeout=ns.timeout,
        header_timeout=ns.header_timeout,
        body_timeout=ns.body_timeout,
        allow_non_finite=ns.allow_non_finite,
        threads=ns.threads,
        drift=ns.drift,
        baseline=ns.baseline or None,
        confidence=ns.confidence,
        confidence_sample=ns.confidence_sample,
        feedback=ns.feedback,
        feedback_ttl=ns.feedback_ttl,
        feedback_max_rows=ns.feedback_max_rows,
        task=ns.task,
        request_id_in_body=ns.request_id_in_body,
        strict_columns=ns.strict_columns,
        log_payloads=ns.log_payloads,
        log_level=str(ns.log_level).upper(),
        value_buckets=ns.value_buckets,
        model_dir=ns.model_dir or None,
        fast_path=ns.fast_path,
        batch_max_size=ns.batch_max_size,
        batch_window_ms=ns.batch_window_ms,
    )
