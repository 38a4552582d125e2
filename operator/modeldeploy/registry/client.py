"""A small client for the MLflow Model Registry REST API.

It speaks MLflow's REST protocol itself (registry/rest.py) rather than through MLflow's RestStore:
importing MLflow costs the operator ~120 MB of RSS for a handful of JSON calls (issue 14). Each
registry gets its own credentials (MlflowClient would read them from process-wide environment
variables). The endpoints, fields and meanings are those of MLflow's RestStore for the calls
below (mlflow/store/model_registry/rest_store.py).

MLflow is still imported, lazily, for what is not plain HTTP: `databricks` tracking URIs and
artifact stores other than the tracking server's proxy (s3://, gs://, a path) when a pre-flight
check reads an MLmodel there. Those imports go through `rest.mlflow_fallback`, under one lock,
because concurrent first imports of mlflow submodules from worker threads fail on circular
imports.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from modeldeploy.api.spec import ModelRef
from modeldeploy.registry.rest import (
    API,
    MlflowRest,
    RestError,
    Unreachable,
    first_line,
    mlflow_fallback,
)
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
    """Operator-wide defaults for the registry's HTTP calls, read by registry/rest.py and by
    MLflow where it is still used (explicit env settings win)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_seconds))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class RegistryClient:
    """Resolves selectors against one registry with one set of credentials."""

    def __init__(self, tracking_uri: str, credentials: Mapping[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._rest = MlflowRest(tracking_uri, credentials)

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
            name=str(mv.get("name", model.name)),
            version=str(mv.get("version", "")),
            run_id=str(mv.get("run_id") or ""),
            source=str(mv.get("source") or ""),
            tags=_tags(mv),
        )

    def _lookup(self, model: ModelRef) -> dict[str, Any] | None:
        if model.alias:
            return self._version("GET", "registered-models/alias", model.name, alias=model.alias)
        if model.version:
            return self._version("GET", "model-versions/get", model.name, version=model.version)
        if model.stage:
            found = self._latest(model.name, model.stage)
            return max(found, key=lambda mv: int(mv["version"])) if found else None
        page = self._rest.call(
            "GET",
            f"{API}/model-versions/search",
            {
                "filter": f"name = '{_quote(model.name)}'",
                "max_results": 1,
                "order_by": ["version_number DESC"],
            },
        ).get("model_versions")
        return page[0] if page else None

    def _version(self, method: str, endpoint: str, name: str, **fields: str) -> dict[str, Any]:
        answer = self._rest.call(method, f"{API}/{endpoint}", {"name": name, **fields})
        mv = answer.get("model_version")
        if not isinstance(mv, dict):
            # MLflow would parse an empty ModelVersion; nothing the operator can serve.
            raise RestError(200, "", f"{endpoint} answered without a model_version")
        return mv

    def _latest(self, name: str, stage: str) -> list[dict[str, Any]]:
        """get-latest-versions by POST, then GET where a server has only that (MLflow's
        `call_all_endpoints`)."""
        body = {"name": name, "stages": [stage]}
        endpoint = f"{API}/registered-models/get-latest-versions"
        try:
            answer = self._rest.call("POST", endpoint, body)
        except RestError as exc:
            if exc.error_code != "ENDPOINT_NOT_FOUND":
                raise
            answer = self._rest.call("GET", endpoint, body)
        return [mv for mv in answer.get("model_versions") or () if isinstance(mv, dict)]

    def version_exists(self, name: str, version: str) -> bool:
        """Whether model `name` has `version`. Raises RegistryUnreachable when it cannot say."""
        try:
            self._version("GET", "model-versions/get", name, version=version)
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
            answer = self._rest.call(
                "GET", f"{API}/model-versions/get-download-uri", {"name": name, "version": version}
            )
            location = str(answer.get("artifact_uri", ""))
            if location.startswith("runs:/"):
                run_id, path = _parse_runs_uri(location)
                run = self._rest.call("GET", f"{API}/runs/get", {"run_id": run_id})
                root = str(run.get("run", {}).get("info", {}).get("artifact_uri", ""))
                location = f"{root.rstrip('/')}/{path}" if path else root
        except Exception as exc:
            raise _translate(exc, ref) from exc
        if urlparse(location).scheme == "mlflow-artifacts":
            return self._read_proxied(location)
        return _read_repository(location)

    def _read_proxied(self, location: str) -> str | None:
        parsed = urlparse(location)
        host = None
        if parsed.netloc:  # mlflow-artifacts://host:port/… names its own server
            host = f"{urlparse(self.tracking_uri).scheme}://{parsed.netloc}"
        endpoint = f"{_ARTIFACTS_ROOT}/{parsed.path.strip('/')}/{MLMODEL}"
        try:
            resp = self._rest.request("GET", endpoint, host=host)
        except Exception as exc:
            raise RegistryUnreachable(str(exc)) from exc
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
            mv = self._version("GET", "model-versions/get", name, version=version)
        except Exception as exc:
            raise _translate(exc, ModelRef(name=name, version=version)) from exc
        return _tags(mv)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        body = {"name": name, "version": version, "key": key, "value": value}
        try:
            self._rest.call("POST", f"{API}/model-versions/set-tag", body)
        except Exception as exc:
            raise _translate(exc, ModelRef(name=name, version=version)) from exc


def _tags(mv: Mapping[str, Any]) -> dict[str, str]:
    """A ModelVersion's tags: a list of {key, value} in MLflow's JSON."""
    return {
        str(t.get("key")): str(t.get("value", ""))
        for t in mv.get("tags") or ()
        if isinstance(t, dict) and t.get("key") is not None
    }


def _parse_runs_uri(uri: str) -> tuple[str, str | None]:
    """runs:/<run_id>/<path> → (run_id, path or None), as MLflow's RunsArtifactRepository."""
    path = urlparse(uri).path
    run_id, _, rest = path[1:].partition("/") if path.startswith("/") else ("", "", "")
    if not run_id:
        raise RestError(0, "INVALID_PARAMETER_VALUE", f"not a proper runs:/ URI: {uri}")
    return run_id, rest or None


def _read_repository(location: str) -> str | None:
    """An MLmodel in an artifact store other than the tracking server's proxy, read through
    MLflow's artifact repositories (imported here, lazily: pre-flight checks of such stores are
    the only reason the operator loads MLflow)."""
    with tempfile.TemporaryDirectory(prefix="modeldeploy-preflight-") as tmp:
        try:
            repository = mlflow_fallback().get_artifact_repository(location)
            path = repository.download_artifacts(MLMODEL, tmp)
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except Exception as exc:
            if _missing(exc):
                return None
            raise RegistryUnreachable(
                f"cannot read {location}/{MLMODEL}: {type(exc).__name__}: {first_line(exc)}"
            ) from exc


def _missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return True
    return str(getattr(exc, "error_code", "")) == "RESOURCE_DOES_NOT_EXIST"


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _translate(exc: Exception, model: ModelRef) -> Exception:
    """The registry's answers → ours. Only an answer that says "no such thing" (an MLflow
    not-found code or HTTP 404) is ModelNotFound; anything else is an outage."""
    if isinstance(exc, RestError) and (exc.error_code in _NOT_FOUND_CODES or exc.status == 404):
        return ModelNotFound(
            f"registered model {model.name!r} has no version for {model.selector}: "
            f"{first_line(exc)}"
        )
    if isinstance(exc, RestError):
        return RegistryUnreachable(f"the registry answered {exc.status}: {first_line(exc)}")
    if isinstance(exc, Unreachable):
        return RegistryUnreachable(first_line(exc))
    return RegistryUnreachable(f"{type(exc).__name__}: {first_line(exc)}")
