import numpy as np
from prometheus_client import generate_latest

from modeldeploy.serving.feedback import OutcomeWindow
from modeldeploy.serving.metrics import BatchHistogram, ServingMetrics, Windows


def test_batch_histogram_buckets_are_cumulative_and_upper_inclusive() -> None:
    h = BatchHistogram("h", "doc", [1.0, 2.0])
    h.observe(np.array([0.5, 1.0, 1.5, 3.0, np.nan]))
    fam = h.family(["m"], ["x"])
    buckets = {s.labels["le"]: s.value for s in fam.samples if s.name == "h_bucket"}
    assert buckets == {"1.0": 2.0, "2.0": 3.0, "+Inf": 4.0}
    assert [s.value for s in fam.samples if s.name == "h_sum"] == [6.0]


def test_every_series_carries_model_name_and_version() -> None:
    w = Windows(outcomes=OutcomeWindow("classification"))
    w.outcomes.add([1, 0], [1, 1])  # type: ignore[union-attr]
    m = ServingMetrics("iris", "3", "run1", 1.5, w, (0.01, 0.1), ())
    m.request(200, 0.005, None)
    m.request(400, 0.001, "bad_input")
    m.classes(np.array([0, 1, 1]))
    text = generate_latest(m.registry).decode()
    model_lines = [
        ln for ln in text.splitlines()
        if ln and not ln.startswith("#") and not ln.startswith(("process_", "python_"))
    ]  # fmt: skip
    assert model_lines
    assert all('model_name="iris"' in ln and 'model_version="3"' in ln for ln in model_lines)
    assert 'prediction_requests_total{code="400",model_name="iris",model_version="3"} 1.0' in text
    assert 'prediction_class_total{class="1",model_name="iris",model_version="3"} 2.0' in text
    assert 'model_feedback_accuracy{model_name="iris",model_version="3"} 0.5' in text


def test_requests_without_a_prediction_are_counted_but_not_timed() -> None:
    m = ServingMetrics("iris", "3", "run1", 1.5, Windows(), (0.01, 0.1), ())
    m.request(200, 0.005, None)
    m.request(400, None, "bad_input")
    m.request(499, None, "client_disconnected")
    text = generate_latest(m.registry).decode()
    assert 'prediction_latency_seconds_count{model_name="iris",model_version="3"} 1.0' in text
    assert 'prediction_requests_total{code="499",model_name="iris",model_version="3"} 1.0' in text


def test_refused_requests_are_counted_by_route_and_code() -> None:
    m = ServingMetrics("iris", "3", "run1", 1.5, Windows(), (0.01, 0.1), ())
    m.refused("/metrics", 405)
    text = generate_latest(m.registry).decode()
    assert (
        'http_requests_refused_total{code="405",model_name="iris",model_version="3",'
        'path="/metrics"} 1.0'
    ) in text


def test_feedback_label_ratio_has_a_bounded_set_of_series() -> None:
    w = Windows(outcomes=OutcomeWindow("classification", size=1000, max_classes=3))
    for i in range(50):
        w.outcomes.add([f"label-{i}"], [0])  # type: ignore[union-attr]
    m = ServingMetrics("iris", "3", "run1", 1.5, w, (0.01, 0.1), ())
    text = generate_latest(m.registry).decode()
    series = [ln for ln in text.splitlines() if ln.startswith("feedback_label_ratio{")]
    assert len(series) == 4  # three named labels and __other__
    assert any('class="__other__"' in ln for ln in series)
