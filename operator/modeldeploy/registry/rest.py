"""MLflow's REST API spoken with `requests`, so the operator process never imports MLflow.

Importing MLflow's client costs ~120 MB of RSS (it pulls in pandas, numpy, scipy, pyarrow and
OpenTelemetry) for what is a handful of JSON calls (issue 14). This module speaks the same
protocol as MLflow's `call_endpoint` (mlflow/utils/rest_utils.py): GET requests carry the body as
query parameters, others as JSON; a non-200 answer whose body is a JSON object is an error with
its `error_code`; the host credentials mean what `MlflowHostCreds` means (basic auth when a user
and password are set, else a bearer token; `MLFLOW_TRACKING_INSECURE_TLS`,
`MLFLOW_TRACKING_SERVER_CERT_PATH`); timeout, retries and pool sizes come from MLflow's
environment variables (`configure_http` sets the operator's defaults: 10 s, no retries, because
the operator retries at the work-queue level with backoff and must not block a worker for
minutes on a dead registry).

MLflow stays the transport only for `databricks` tracking URIs, whose host credentials (profiles,
OAuth, the SDK) are not plain HTTP; `mlflow_fallback` imports it lazily.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

API = "/api/2.0/mlflow"
# The status codes MLflow retries (mlflow/utils/request_utils.py) when retries are on.
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
# MLflow's defaults (mlflow/environment_variables.py) where the environment says nothing.
_DEFAULT_TIMEOUT = 120
_DEFAULT_RETRIES = 0  # MLflow's is 7; the operator's configure_http sets 0 in any case
_DEFAULT_BACKOFF = 2
_DEFAULT_JITTER = 1.0
_DEFAULT_POOL = 10

# Concurrent first imports of mlflow submodules from worker threads fail on circular imports;
# every lazy import of mlflow in the operator goes through `mlflow_fallback`, under this lock.
_MLFLOW_IMPORT = threading.Lock()


@dataclass(frozen=True)
class MlflowFallback:
    """The few MLflow functions the operator still needs for what is not plain HTTP."""

    http_request: Any  # mlflow.utils.rest_utils.http_request
    get_databricks_host_creds: Any
    get_artifact_repository: Any


def mlflow_fallback() -> MlflowFallback:
    """Imports MLflow's fallbacks, one thread at a time (see `_MLFLOW_IMPORT`)."""
    with _MLFLOW_IMPORT:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.databricks_utils import get_databricks_host_creds
        from mlflow.utils.rest_utils import http_request

        return MlflowFallback(http_request, get_databricks_host_creds, get_artifact_repository)


class RestError(Exception):
    """The server answered with an error: `status` is the HTTP status, `error_code` MLflow's
    code from the body (empty when the body was not an MLflow error)."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code = status, error_code


class Unreachable(Exception):
    """No usable answer: connection refused, timeout, TLS failure, a body that is not JSON."""


class MlflowRest:
    """One registry, one set of credentials, one connection pool.

    `credentials` holds the MLFLOW_TRACKING_* variables of this registry (not the process's
    environment, so two registries never share credentials). Thread-safe for the operator's
    use: requests' Session is shared by its worker threads, as MLflow shares its own."""

    def __init__(self, tracking_uri: str, credentials: Mapping[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._creds = dict(credentials or {})
        self._databricks = tracking_uri.startswith("databricks")
        self._timeout = _env_number("MLFLOW_HTTP_REQUEST_TIMEOUT", _DEFAULT_TIMEOUT, int)
        self._session = requests.Session()
        retries = _env_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES", _DEFAULT_RETRIES, int)
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            redirect=retries,
            status=retries,
            status_forcelist=_TRANSIENT,
            backoff_factor=_env_number("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", _DEFAULT_BACKOFF, int),
            backoff_jitter=_env_number(
                "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", _DEFAULT_JITTER, float
            ),
            allowed_methods=None,  # MLflow retries every method
            raise_on_status=False,  # the last answer is returned and judged like any other
        )
        adapter = HTTPAdapter(
            pool_connections=_env_number("MLFLOW_HTTP_POOL_CONNECTIONS", _DEFAULT_POOL, int),
            pool_maxsize=_env_number("MLFLOW_HTTP_POOL_MAXSIZE", _DEFAULT_POOL, int),
            max_retries=retry,
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(_auth_header(self._creds))
        cert = self._creds.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        insecure = self._creds.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
        self._session.verify = cert if cert else not insecure

    def call(
        self, method: str, endpoint: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One REST call: the answer's JSON object. Raises RestError or Unreachable."""
        resp = self.request(method, endpoint, body)
        if resp.status_code != 200:
            raise _error(resp, endpoint)
        if not resp.text.strip():
            return {}
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise Unreachable(f"{endpoint} answered 200 with a body that is not a JSON object")
        return answer

    def request(
        self,
        method: str,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
        host: str | None = None,
    ) -> requests.Response:
        """The raw answer to one request (any status); `host` replaces the tracking URI's."""
        kwargs: dict[str, Any] = {"params" if method == "GET" else "json": body}
        try:
            if self._databricks:
                fallback = mlflow_fallback()
                creds = fallback.get_databricks_host_creds(host or self.tracking_uri)
                return fallback.http_request(creds, endpoint, method, **kwargs)  # type: ignore[no-any-return]
            url = f"{(host or self.tracking_uri).rstrip('/')}{endpoint}"
            return self._session.request(method, url, timeout=self._timeout, **kwargs)
        except Exception as exc:
            raise Unreachable(f"{type(exc).__name__}: {first_line(exc)}") from exc

    def close(self) -> None:
        self._session.close()


def _auth_header(creds: Mapping[str, str]) -> dict[str, str]:
    """MlflowHostCreds' rule: basic auth when both user and password are set, else a token."""
    user, password = creds.get("MLFLOW_TRACKING_USERNAME"), creds.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    if token := creds.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    return {}


def _error(resp: requests.Response, endpoint: str) -> RestError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error_code", ""))
        message = str(body.get("message", "")) or f"{endpoint} answered {resp.status_code}"
        return RestError(resp.status_code, code, f"{code}: {message}" if code else message)
    return RestError(resp.status_code, "", f"{endpoint} answered {resp.status_code}")


def _env_number(name: str, default: Any, kind: type) -> Any:
    raw = os.environ.get(name, "").strip()
    try:
        return kind(raw) if raw else default
    except ValueError:
        return default


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
