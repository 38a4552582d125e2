import pytest

from modeldeploy.serving.trust import LoadRefused, check_code, check_scheme, code_needed


def sklearn(fmt: str) -> dict[str, object]:
    return {"flavors": {"python_function": {"loader_module": "mlflow.sklearn"},
                        "sklearn": {"serialization_format": fmt}}}  # fmt: skip


PYFUNC = {"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model",
                                          "python_model": "python_model.pkl"}}}  # fmt: skip


def test_skops_sklearn_needs_no_trust() -> None:
    assert code_needed(sklearn("skops")) is None


@pytest.mark.parametrize("fmt", ["pickle", "cloudpickle"])
def test_pickled_sklearn_needs_trust(fmt: str) -> None:
    assert fmt in (code_needed(sklearn(fmt)) or "")


def test_custom_pyfunc_and_code_paths_need_trust() -> None:
    assert "cloudpickled" in (code_needed(PYFUNC) or "")
    with_code = {"flavors": {"python_function": {"loader_module": "mlflow.sklearn", "code": "c"}}}
    assert "code_paths" in (code_needed(with_code) or "")


def test_unknown_loader_needs_trust() -> None:
    other = {"flavors": {"python_function": {"loader_module": "mlflow.pytorch"}}}
    assert "not known" in (code_needed(other) or "")


def test_registry_trust_covers_models_uris_only() -> None:
    check_code("models:/m/1", PYFUNC, "registry")
    with pytest.raises(LoadRefused, match="MODELDEPLOY_TRUST_MODEL_CODE"):
        check_code("runs:/abc/model", PYFUNC, "registry")
    with pytest.raises(LoadRefused, match="cloudpickled"):
        check_code("models:/m/1", PYFUNC, "never")
    check_code("/some/path", PYFUNC, "always")


@pytest.mark.parametrize(
    "uri", ["models:/m/1", "runs:/r/model", "/abs/path", "rel/path", "file:///x"]
)
def test_default_schemes_are_allowed(uri: str) -> None:
    check_scheme(uri, ("models", "runs", "file"))


@pytest.mark.parametrize("uri", ["s3://b/m", "http://host/m", "gs://b/m"])
def test_other_schemes_are_refused(uri: str) -> None:
    with pytest.raises(LoadRefused, match="MODELDEPLOY_ALLOWED_URI_SCHEMES"):
        check_scheme(uri, ("models", "runs", "file"))
