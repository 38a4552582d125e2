"""Loading a model safely: allowed URI schemes, and no stored code run unless trusted.

Unpickling is running code: a pickled sklearn model or a cloudpickled `python_model` can do
anything when loaded, and so can a models-from-code file or `code_paths` shipped with the model.
The server therefore reads the MLmodel file first and refuses such a model unless
`--trust-model-code` allows it: `never` (default), `registry` (only for `models:/` URIs, i.e.
versions someone with registry write access registered — the operator's path, which sets
MODELDEPLOY_TRUST_MODEL_CODE=registry on serving pods) or `always`. sklearn models that MLflow 3
logs by default use skops, which loads without running stored code, so they need no trust.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np

from modeldeploy.names import model_version_uri
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.trust import LoadRefused, check_code, check_scheme, uri_scheme
from modeldeploy.tracking.baseline import BASELINE_FILE, BaselineError, DriftBaseline

log = logging.getLogger("modeldeploy.serving")


@dataclass(frozen=True)
class ModelInfo:
    uri: str
    name: str
    version: str
    run_id: str
    local_path: str


@dataclass
class LoadedModel:
    info: ModelInfo
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    load_seconds: float
    baseline: DriftBaseline | None
    classifier: Any | None  # the raw estimator when it has predict_proba
    regressor: bool  # sklearn says the raw estimator is a regressor
    input_columns: tuple[str, ...]  # named inputs of the signature, in order
    required_columns: tuple[str, ...]
    type_hint_signature: bool
    n_features: int | None = None  # the estimator's declared width (sklearn), if no signature


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))?/?$")


def resolve(uri: str, config: ServeConfig) -> tuple[str, str | None, str | None, str | None]:
    """(URI to download, registered name, version, run id): an alias is resolved once, here,
    and the concrete version downloaded, so the alias moving mid-load cannot mix versions."""
    m = _MODELS_URI.match(uri)
    if not m:
        run = re.match(r"^runs:/([^/]+)/", uri)
        return uri, None, None, run.group(1) if run else None
    from mlflow import MlflowClient

    client = MlflowClient()
    name, alias, ref = m.group("name"), m.group("alias"), m.group("ref")
    if alias:
        mv = client.get_model_version_by_alias(name, alias)
    elif ref and ref.isdigit():
        mv = client.get_model_version(name, ref)
    else:
        return uri, name, None, None  # stage or 'latest': MLflow resolves it while downloading
    return model_version_uri(name, str(mv.version)), name, str(mv.version), mv.run_id or None


def load(config: ServeConfig) -> LoadedModel:
    """Download, check, load; raises LoadRefused or MLflow's own errors."""
    import mlflow.artifacts
    import mlflow.pyfunc
    import yaml

    uri = config.model_uri
    check_scheme(uri, config.allowed_schemes)
    started = time.perf_counter()
    concrete, reg_name, reg_version, run_id = resolve(uri, config)
    if uri_scheme(concrete) == "file" and os.path.isdir(_path(concrete)):
        local = _path(concrete)
    else:
        dst = config.model_dir or tempfile.mkdtemp(prefix="modeldeploy-model-")
        local = mlflow.artifacts.download_artifacts(artifact_uri=concrete, dst_path=dst)
    with open(os.path.join(local, "MLmodel"), encoding="utf-8") as fh:
        mlmodel = yaml.safe_load(fh) or {}
    check_code(uri, mlmodel, config.trust_model_code)
    model = mlflow.pyfunc.load_model(local)
    seconds = time.perf_counter() - started
    info = ModelInfo(
        uri=uri,
        name=config.model_name or reg_name or str(mlmodel.get("name") or "unknown"),
        version=config.model_version or reg_version or "unknown",
        run_id=str(mlmodel.get("run_id") or run_id or ""),
        local_path=local,
    )
    classifier, regressor = _estimator_kind(model)
    cols, required = _signature_columns(model)
    width = None
    if model.metadata.get_input_schema() is None:
        width = _declared_width(model)
    hinted = getattr(model.metadata, "_is_signature_from_type_hint", lambda: False)()
    return LoadedModel(
        info=info,
        pyfunc=model,
        load_seconds=seconds,
        baseline=_baseline(config, local),
        classifier=classifier,
        regressor=regressor,
        input_columns=cols,
        required_columns=required,
        type_hint_signature=bool(hinted),
        n_features=width,
    )


def _path(uri: str) -> str:
    return urlparse(uri).path if uri.startswith("file:") else uri


def _estimator_kind(model: Any) -> tuple[Any | None, bool]:
    try:
        raw = model.get_raw_model()
    except Exception:  # flavors without a raw model (custom pyfunc) say so by raising
        return None, False
    try:
        from sklearn.base import is_classifier, is_regressor
    except ImportError:
        return None, False
    if is_classifier(raw) and hasattr(raw, "predict_proba"):
        return raw, False
    return None, bool(is_regressor(raw))


def _declared_width(model: Any) -> int | None:
    """sklearn's `n_features_in_`: set by fit, a contract the model states without running."""
    try:
        raw = model.get_raw_model()
    except Exception:  # flavors without a raw model
        return None
    width = getattr(raw, "n_features_in_", None)
    return int(width) if isinstance(width, int | np.integer) else None


def _signature_columns(model: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return (), ()
    names = tuple(str(n) for n in schema.input_names())
    required = tuple(str(n) for n in schema.required_input_names())
    return names, required


def _baseline(config: ServeConfig, local: str) -> DriftBaseline | None:
    source = config.baseline
    try:
        if source:
            check_scheme(source, config.allowed_schemes)
            if uri_scheme(source) != "file":
                import mlflow.artifacts

                source = mlflow.artifacts.download_artifacts(artifact_uri=source)
            path = _path(source)
        else:
            path = os.path.join(local, BASELINE_FILE)
            if not os.path.exists(path):
                log.info("no drift baseline in the model", extra={"path": BASELINE_FILE})
                return None
        with open(path, encoding="utf-8") as fh:
            return DriftBaseline.from_json(fh.read())
    except (OSError, BaselineError, LoadRefused, json.JSONDecodeError) as exc:
        # Serving matters more than drift: say loudly that PSI is off, and serve.
        log.error("drift baseline unusable, PSI disabled: %s", exc)
        return None
