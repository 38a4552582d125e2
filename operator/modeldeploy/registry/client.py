"""A small client for the MLflow Model Registry REST API.

Built on MLflow's own RestStore so that each registry gets its own credentials (MlflowClient
reads them from process-wide environment variables). MLflow is imported at module load, never
lazily from worker threads: concurrent first imports of mlflow submodules fail on circular
imports. MLflow's built-in HTTP retries are turned
down (`configure_http`) because the operator retries at the work-queue level with backoff and
must not block a worker for minutes on a dead registry.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException, RestException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
from mlflow.store.model_registry.rest_store import RestStore
from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
from mlflow.utils.rest_utils import MlflowHostCreds, http_request

from modeldeploy.api.spec import ModelRef
from modeldeploy.registry.types import ModelNotFound, RegistryUnreachable, ResolvedVersion

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}
# The tracking server's artifact proxy (`mlflow server`'s default artifact store in MLflow 3).
_ARTIFACTS_ROOT = "/api/2.0/mlflow-artifacts/artifacts"
MLMODEL = "MLmodel"
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
        self._creds = creds
        self._store = RestStore(lambda: _host_creds(tracking_uri, creds))
        self._runs = TrackingRestStore(lambda: _host_creds(tracking_uri, creds))

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

    def version_exists(self, name: str, version: str) -> bool:
        """Whether model `name` has `version`. Raises RegistryUnreachable when it cannot say."""
        try:
            self._store.get_model_version(name, version)
        except Exception as exc:
            err = _translate(exc, ModelRef(name=name, version=version))
            if isinstance(err, ModelNotFound):
                return False
            raise err from exc
        return True

    def read_mlmodel(self, name: str, version: str) -> str | None:
        """The version's MLmodel file, read where serving pods download it from (the registry's
        download URI), or None when it is not there. Raises ModelNotFound when the version is
        gone, RegistryUnreachable when the registry or the artifact store cannot say.

        The tracking server's artifact proxy is asked with this client's credentials; other
        stores (s3://, gs://, a path) through MLflow's artifact repositories with the operator's
        own environment, as the MLflow client would."""
        ref = ModelRef(name=name, version=version)
        try:
            location = self._store.get_model_version_download_uri(name, version)
            if location.startswith("runs:/"):
                run_id, path = RunsArtifactRepository.parse_runs_uri(location)
                root = self._runs.get_run(run_id).info.artifact_uri
                location = f"{root.rstrip('/')}/{path}" if path else root
        except Exception as exc:
            raise _translate(exc, ref) from exc
        if urlparse(location).scheme == "mlflow-artifacts":
            return self._read_proxied(location)
        return _read_repository(location)

    def _read_proxied(self, location: str) -> str | None:
        parsed = urlparse(location)
        host = self.tracking_uri
        if parsed.netloc:  # mlflow-artifacts://host:port/… names its own server
            host = f"{urlparse(self.tracking_uri).scheme}://{parsed.netloc}"
        endpoint = f"{_ARTIFACTS_ROOT}/{parsed.path.strip('/')}/{MLMODEL}"
        try:
            resp = http_request(_host_creds(host, self._creds), endpoint, "GET")
        except Exception as exc:
            raise RegistryUnreachable(f"{type(exc).__name__}: {_first_line(exc)}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RegistryUnreachable(
                f"the artifact store answered {resp.status_code} for {location}/{MLMODEL}"
            )
        return str(resp.text)

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        """The version's tags. Raises ModelNotFound/RegistryUnreachable."""
        try:
            mv = self._store.get_model_version(name, version)
        except Exception as exc:
            raise _translate(exc, ModelRef(name=name, version=version)) from exc
        return {str(k): str(v) for k, v in (mv.tags or {}).items()}

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        try:
            self._store.set_model_version_tag(name, version, ModelVersionTag(key, value))
        except Exception as exc:
            raise _translate(exc, ModelRef(name=name, version=version)) from exc


def _read_repository(location: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="modeldeploy-preflight-") as tmp:
        try:
            path = get_artifact_repository(location).download_artifacts(MLMODEL, tmp)
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except Exception as exc:
            if _missing(exc):
                return None
            raise RegistryUnreachable(
                f"cannot read {location}/{MLMODEL}: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc


def _missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return True
    return str(getattr(exc, "error_code", "")) == "RESOURCE_DOES_NOT_EXIST"


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
