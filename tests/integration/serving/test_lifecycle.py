"""Safe loading, readiness, and graceful shutdown of the `modeldeploy serve` process."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
import requests

from tests.integration.serving.conftest import Models, Server, wait_ready


def exits_with(server: Server, timeout: float = 120) -> tuple[int, str]:
    code = server.proc.wait(timeout)
    return code, server.log_text()


def test_custom_pyfunc_is_refused_by_default(models: Models, serve: Any) -> None:
    server = serve(f"models:/{models.pyfunc}/1", ready=False)
    code, log = exits_with(server)
    assert code == 1
    assert "refusing to load" in log and "cloudpickled" in log
    assert "MODELDEPLOY_TRUST_MODEL_CODE=registry" in log


def test_registry_trust_does_not_cover_runs_uris(models: Models, serve: Any) -> None:
    from mlflow import MlflowClient

    mv = MlflowClient(models.tracking_uri).get_model_version(models.pyfunc, "1")
    server = serve(
        f"runs:/{mv.run_id}/model", env={"MODELDEPLOY_TRUST_MODEL_CODE": "registry"}, ready=False
    )
    code, log = exits_with(server)
    assert code == 1 and "refusing to load" in log


def test_skops_sklearn_from_the_registry_needs_no_setting(classifier: Server) -> None:
    """The classifier fixture runs with no trust setting at all (MLflow 3 logs sklearn as skops)."""
    assert classifier.get("/health").status_code == 200


def test_disallowed_scheme_is_refused(serve: Any) -> None:
    server = serve("s3://bucket/model", ready=False)
    code, log = exits_with(server)
    assert code == 1 and "URI scheme 's3' is not allowed" in log


def test_a_model_that_cannot_load_stops_the_process(models: Models, serve: Any) -> None:
    server = serve(f"models:/{models.classifier}/99", ready=False)
    code, log = exits_with(server)
    assert code == 1 and "could not load" in log


def test_health_says_loading_until_the_model_is_ready(models: Models, serve: Any) -> None:
    server = serve(f"models:/{models.classifier}/1", ready=False)
    seen = wait_ready(server)
    assert seen[-1] == 200
    assert set(seen) <= {200, 503}
    assert server.get("/ping").status_code == 200
    server.stop()


def test_sigterm_drains_in_flight_requests_and_exits_0(models: Models, serve: Any) -> None:
    server = serve(f"models:/{models.pyfunc}/1", env={"MODELDEPLOY_TRUST_MODEL_CODE": "registry"})
    result: dict[str, Any] = {}

    def slow() -> None:
        result["r"] = server.post(
            "/invocations",
            json={"dataframe_records": [{"a": 1.0, "b": 1.0, "boom": 0}], "params": {"sleep": 2}},
        )

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 20
    while server.value("prediction_requests_in_flight") < 1:  # the request is being served
        assert time.monotonic() < deadline, "slow request never arrived"
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert result["r"].status_code == 200, result["r"].text
    assert server.proc.wait(30) == 0
    with pytest.raises(requests.ConnectionError):
        server.get("/ping")
    assert '"msg": "stopped"' in server.log_text()
