import pytest

from modeldeploy.serving.config import ConfigError, parse


def test_env_supplies_defaults_and_flags_override() -> None:
    env = {
        "MODEL_URI": "models:/m/1",
        "PORT": "9000",
        "MODEL_NAME": "m",
        "MODELDEPLOY_DRIFT": "false",
    }
    c = parse([], env)
    assert (c.model_uri, c.port, c.model_name, c.drift) == ("models:/m/1", 9000, "m", False)
    c = parse(["--port", "9100", "--drift", "true"], env)
    assert (c.port, c.drift) == (9100, True)


def test_safe_defaults() -> None:
    c = parse(["--model-uri", "/m"], {})
    assert c.trust_model_code == "never"
    assert c.allowed_schemes == ("models", "runs", "file")
    assert c.port == 8080


def test_operator_setting_allows_registry_code() -> None:
    c = parse([], {"MODEL_URI": "models:/m/1", "MODELDEPLOY_TRUST_MODEL_CODE": "registry"})
    assert c.trust_model_code == "registry"


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        ([], {}, "no model"),
        ([], {"MODEL_URI": "x", "MODELDEPLOY_TRUST_MODEL_CODE": "yes"}, "TRUST_MODEL_CODE"),
        ([], {"MODEL_URI": "x", "MODELDEPLOY_DRIFT": "maybe"}, "boolean"),
        ([], {"MODEL_URI": "x", "PORT": "http"}, "invalid literal"),
        (["--model-uri", "x", "--confidence-sample", "0"], {}, "confidence-sample"),
    ],
)
def test_bad_configuration_is_refused(argv: list[str], env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse(argv, env)


def test_slow_clients_are_bounded_by_default_and_configurable() -> None:
    c = parse(["--model-uri", "/m"], {})
    assert (c.header_timeout, c.body_timeout, c.allow_non_finite) == (10.0, 30.0, False)
    env = {"MODEL_URI": "/m", "MODELDEPLOY_HEADER_TIMEOUT": "2", "MODELDEPLOY_BODY_TIMEOUT": "3",
           "MODELDEPLOY_ALLOW_NON_FINITE": "true"}  # fmt: skip
    c = parse([], env)
    assert (c.header_timeout, c.body_timeout, c.allow_non_finite) == (2.0, 3.0, True)
    with pytest.raises(ConfigError, match="--body-timeout must be positive"):
        parse(["--model-uri", "/m", "--body-timeout", "0"], {})
