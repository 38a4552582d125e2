"""Whether the serving runtime will load a model without running code stored with it.

The rules of `serving.loader` that need nothing but the MLmodel file and the URI, in a module of
their own so that the operator's pre-flight check (registry/preflight.py) asks the runtime's own
rule without importing the runtime's model loading (numpy, MLflow) into the operator process.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

# pyfunc loader modules that load from a data format, not from stored Python code.
_SAFE_LOADERS = {"mlflow.onnx", "mlflow.xgboost"}


class LoadRefused(RuntimeError):
    """The configuration forbids loading this model; the message says which setting allows it."""


def uri_scheme(uri: str) -> str:
    scheme = urlparse(uri).scheme.lower()
    return "file" if len(scheme) <= 1 else scheme  # '' or a Windows drive letter: a path


def check_scheme(uri: str, allowed: tuple[str, ...]) -> None:
    scheme = uri_scheme(uri)
    if scheme not in allowed:
        raise LoadRefused(
            f"refusing to load {uri!r}: URI scheme {scheme!r} is not allowed "
            f"(allowed: {', '.join(allowed)}; set MODELDEPLOY_ALLOWED_URI_SCHEMES or "
            "--allowed-schemes to change that)"
        )


def code_needed(mlmodel: dict[str, Any]) -> str | None:
    """Why loading this model runs code stored with it, or None when it does not."""
    flavors = mlmodel.get("flavors") or {}
    pyfunc = flavors.get("python_function")
    if not isinstance(pyfunc, dict):
        return "it has no python_function flavor, so it cannot be served as pyfunc"
    if pyfunc.get("code"):
        return "it ships code_paths, which are imported at load"
    loader = pyfunc.get("loader_module")
    if loader == "mlflow.sklearn":
        fmt = (flavors.get("sklearn") or {}).get("serialization_format", "pickle")
        if fmt == "skops":
            return None
        return f"its sklearn flavor is stored with {fmt}, and unpickling runs code"
    if loader == "mlflow.pyfunc.model":
        if pyfunc.get("model_code_path") or str(pyfunc.get("python_model", "")).endswith(".py"):
            return "it is a models-from-code python_model, whose file is executed"
        return "its python_model is cloudpickled, and unpickling runs code"
    if loader in _SAFE_LOADERS:
        return None
    return f"its loader {loader!r} is not known to load without running stored code"


def check_code(uri: str, mlmodel: dict[str, Any], trust: str) -> None:
    reason = code_needed(mlmodel)
    if reason is None or trust == "always" or (trust == "registry" and uri_scheme(uri) == "models"):
        return
    hint = "or log sklearn models with serialization_format='skops' (MLflow 3's default)"
    raise LoadRefused(
        f"refusing to load {uri!r}: {reason}. Set MODELDEPLOY_TRUST_MODEL_CODE=registry "
        f"(models:/ URIs only) or =always (or --trust-model-code) if you trust its source, {hint}"
    )


def refusal(uri: str, mlmodel: dict[str, Any], trust: str) -> str | None:
    """Why serving `uri` with this MLmodel under `trust` would fail, or None: `load`'s own rules
    (a python_function flavor to load, `check_code`), read without loading anything. The
    operator's pre-flight check asks this before it rolls a version out."""
    if not isinstance((mlmodel.get("flavors") or {}).get("python_function"), dict):
        return "it has no python_function flavor, so it cannot be served as pyfunc"
    try:
        check_code(uri, mlmodel, trust)
    except LoadRefused as exc:
        return str(exc)
    return None
