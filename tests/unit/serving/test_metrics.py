import numpy as np
from prometheus_client import generate_latest

from modeldeploy.serving.metrics import BatchHistogram, ServingMetrics, Windows


def test_batch_histogram_buckets_are_cumulative_and_upper_inclusive() -> None:
    h = BatchHistogram("h", "doc", [1.0, 2.0])
    h.observe(np.array([0.5, 1.0, 1.5, 3.0, np.nan]))
    fam = h.family(["m"], ["x"])
    buckets = {s.labels["le"]: s.value for s in fam.samples if s.name == "h_bucket"}
    assert buckets == {"1.0": 2.0, "2.0": 3.0, "+Inf": 4.0}
    assert [s.value for s in fam.samples if s.name == "h_sum"] == [6.0]


def test_every_series_carries_model_name_and_version() -> None:
    m = ServingMetrics("iris", "3", "run1", 1.5, Windows(), (0.01, 0.1), ())
    m.outcomes([1, 0], [1, 1], "classification")
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
    assert (
        'prediction_feedback_outcomes_total{correct="false",model_name="iris",model_version="3",'
        'predicted_class="1",true_class="0"} 1.0'
    ) in text


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


def series(m: ServingMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("model_"))): s.value
        for fam in m.registry.collect()
        for s in fam.samples
        if s.name == name
    }


def test_known_classes_get_every_outcome_series_at_zero() -> None:
    m = ServingMetrics("iris", "3", "r", 1.0, Windows(), (0.1,), (), classes=[0, 1, 2])
    outcomes = series(m, "prediction_feedback_outcomes_total")
    assert len(outcomes) == 9 and set(outcomes.values()) == {0.0}
    assert (("correct", "true"), ("predicted_class", "2"), ("true_class", "2")) in outcomes
    assert set(series(m, "prediction_class_total")) == {(("class", c),) for c in "012"}


def test_outcomes_add_up_to_the_confusion_matrix() -> None:
    m = ServingMetrics("iris", "3", "r", 1.0, Windows(), (0.1,), ())
    m.outcomes(["a", "a", "b", 1], ["a", "b", "b", 1.0], "classification")
    m.outcomes(["a"], ["b"], "classification")
    outcomes = series(m, "prediction_feedback_outcomes_total")
    assert outcomes[(("correct", "false"), ("predicted_class", "b"), ("true_class", "a"))] == 2
    assert outcomes[(("correct", "true"), ("predicted_class", "1"), ("true_class", "1"))] == 1
    assert series(m, "prediction_feedback_rows_total") == {(): 5.0}


def test_regression_outcomes_sum_errors_and_bin_labels() -> None:
    m = ServingMetrics("house", "1", "r", 1.0, Windows(), (0.1,), (1.0, 10.0))
    m.outcomes([1.0, 2.0, 3.0], [2.0, 2.0, 5.0], "regression")
    assert series(m, "prediction_feedback_absolute_error_total") == {(): 3.0}
    assert series(m, "prediction_feedback_squared_error_total") == {(): 5.0}
    labels = series(m, "prediction_feedback_label_value_bucket")
    assert labels[(("le", "1.0"),)] == 1 and labels[(("le", "10.0"),)] == 3


def test_class_labels_are_bounded_and_shared_by_predictions_and_feedback() -> None:
    m = ServingMetrics("iris", "3", "r", 1.0, Windows(), (0.1,), ())
    m.class_names.limit = 3
    m.classes(np.array(["a", "b", "c", "d", "e"]))
    m.outcomes(["e"], ["a"], "classification")
    assert set(series(m, "prediction_class_total")) == {
        (("class", c),) for c in ("a", "b", "c", "__other__")
    }
    m.outcomes(["d", "e"], ["d", "d"], "classification")  # both pooled: one hit, one miss
    outcomes = series(m, "prediction_feedback_outcomes_total")
    assert outcomes[(("correct", "false"), ("predicted_class", "a"), ("true_class", "__other__"))]
    other = (("predicted_class", "__other__"), ("true_class", "__other__"))
    assert outcomes[(("correct", "true"), *other)] == 1
    assert outcomes[(("correct", "false"), *other)] == 1


def test_target_shares_are_exported() -> None:
    m = ServingMetrics(
        "iris", "3", "r", 1.0, Windows(), (0.1,), (), target_shares=[("0", 0.25), ("1", 0.75)]
    )
    assert series(m, "target_baseline_share") == {(("class", "0"),): 0.25, (("class", "1"),): 0.75}
