"""A small client for the MLflow Model Registry REST API.

Built on MLflow's own RestStore so that each registry gets its own credentials (MlflowClient
reads them from process-wide environment variables). MLflow is imported at module load, never
lazily from worker threads: concurrent first imports of mlflow submodules fail on circular
imports. MLflow's built-in HTTP retries are turned
down (`configure_http`) because the operator retries at the work-queue level with backoff and
must not block a worker for minutes on a dead registry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException, RestException
from mlflow.store.model_registry.rest_store import RestStore
from mlflow.utils.rest_utils import MlflowHostCreds

from modeldeploy.api.spec import ModelRef
from modeldeploy.registry.types import ModelNotFound, RegistryUnreachable, ResolvedVersion

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}
CREDENTIAL_KEYS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
)


def configure_http(timeout_seconds: int = 10, max_retries: int = 0) -> None:
    """Operator-wide defaults for MLflow's HTTP layer (explicit env settings win)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_seconds))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class RegistryClient:
    """Resolves selectors against one registry with one set of credentials."""

    def __init__(self, tracking_uri: str, credentials: Mapping[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        creds = dict(credentials or {})
        self._store = RestStore(lambda: _host_creds(tracking_uri, creds))

    def resolve(self, model: ModelRef) -> ResolvedVersion:
        """The version `model`'s selector names now. Raises ModelNotFound/RegistryUnreachable."""
        try:
            mv = self._lookup(model)
        except Exception as exc:
            raise _translate(exc, model) from exc
        if mv is None:
            raise ModelNotFound(
                f"registered model {model.name!r} has no version for {model.selector}"
            )
        return ResolvedVersion(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            source=mv.source or "",
            tags=dict(mv.tags or {}),
        )

    def _lookup(self, model: ModelRef) -> Any:
        if model.alias:
            return self._store.get_model_version_by_alias(model.name, model.alias)
        if model.version:
            return self._store.get_model_version(model.name, model.version)
        if model.stage:
            found = self._store.get_latest_versions(model.name, [model.stage])
            return max(found, key=lambda mv: int(mv.version)) if found else None
        page = self._store.search_model_versions(
            filter_string=f"name = '{_quote(model.name)}'",
            max_results=1,
            order_by=["version_number DESC"],
        )
        return page[0] if page else None

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        try:
            self._store.set_model_version_tag(name, version, ModelVersionTag(key, value))
        except Exception as exc:
            raise _translate(exc, ModelRef(name=name, version=version)) from exc


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _host_creds(uri: str, creds: Mapping[str, str]) -> Any:
    if uri.startswith("databricks"):
        from mlflow.utils.databricks_utils import get_databricks_host_creds

        return get_databricks_host_creds(uri)
    return MlflowHostCreds(
        host=uri,
        username=creds.get("MLFLOW_TRACKING_USERNAME"),
        password=creds.get("MLFLOW_TRACKING_PASSWORD"),
        token=creds.get("MLFLOW_TRACKING_TOKEN"),
        ignore_tls_verification=creds.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true",
        server_cert_path=creds.get("MLFLOW_TRACKING_SERVER_CERT_PATH"),
    )


def _translate(exc: Exception, model: ModelRef) -> Exception:
    """MLflow's exceptions → ours. Only an answer that says "no such thing" is ModelNotFound."""
    if isinstance(exc, RestException | MlflowException):
        code = str(getattr(exc, "error_code", ""))
        status = int(getattr(exc, "get_http_status_code", lambda: 500)())
        if code in _NOT_FOUND_CODES or status == 404:
            return ModelNotFound(
                f"registered model {model.name!r} has no version for {model.selector}: "
                f"{_first_line(exc)}"
            )
    return RegistryUnreachable(f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
