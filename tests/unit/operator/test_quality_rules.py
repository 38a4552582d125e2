"""The quality recording rules, run by Prometheus' own rule engine (`promtool test rules`) over
the counters of two pods that saw different traffic, equal the figures computed directly over all
their labelled rows: `classification_stats` for accuracy and macro precision/recall/F1, `psi` for
input, output and target drift.

The input series are what two serving pods export (every series from zero at the first scrape,
as the server creates them), sampled each minute; evaluated at the end of a 10-minute window
that starts on the first sample and ends on the last, `increase()` has nothing to extrapolate,
so the only difference left is floating-point rounding (checked to 1e-9). On a live Prometheus
`increase()` extrapolates each pod's counters to the window's edges by a factor of up to one
scrape interval over the window, so figures pooled over pods agree to that relative precision.
"""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from modeldeploy import names as n
from modeldeploy.api.spec import AlertsSpec
from modeldeploy.render.quality_rules import quality_rules
from modeldeploy.serving.drift import psi
from modeldeploy.serving.feedback import ClassificationStats, classification_stats
from tests.unit.operator.test_render import promtool

NS, MD, VERSION = "ml", "iris", "4"
WHO = f'namespace="{NS}", modeldeployment="{MD}", model_version="{VERSION}"'
CLASSES = ("0", "1", "2")
STEPS = 10  # samples at 0m..10m: 0 first, then the final count


def series(metric: str, pod: str, value: float, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    values = " ".join(["0"] + [repr(float(value))] * STEPS)
    return {"series": f'{metric}{{{WHO}, pod="{pod}"{extra}}}', "values": values}


def gauge(metric: str, pod: str, value: float, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    values = " ".join([repr(float(value))] * (STEPS + 1))
    return {"series": f'{metric}{{{WHO}, pod="{pod}"{extra}}}', "values": values}


def pairs(rng: random.Random, count: int, hit_rate: float) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        t = rng.choice(CLASSES)
        p = t if rng.random() < hit_rate else rng.choice([c for c in CLASSES if c != t])
        out.append((t, p))
    return out


def check(value: float, metric: str, **labels: str) -> dict[str, Any]:
    """An expression test passing only when the recorded series equals `value` to 1e-9."""
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {
        "expr": f"abs({metric}{{{WHO}{extra}}} - {value!r}) < bool 1e-9",
        "eval_time": f"{STEPS}m",
        "exp_samples": [{"labels": f"{{{WHO}{extra}}}", "value": 1}],
    }


def stats_checks(want: ClassificationStats) -> list[dict[str, Any]]:
    return [
        check(want.accuracy, n.REC_ACCURACY),
        check(want.precision, n.REC_PRECISION),
        check(want.recall, n.REC_RECALL),
        check(want.f1, n.REC_F1),
    ]


def run_promtool(tmp_path: Path, inputs: list[dict[str, str]], tests: list[dict[str, Any]]) -> None:
    binary = promtool()
    rules = quality_rules(NS, MD, AlertsSpec(quality_window=f"{STEPS}m", min_rows=10))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yml"],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": inputs, "promql_expr_test": tests}],
            },
            width=10_000,
        )
    )
    done = subprocess.run(
        [binary, "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_classifier_quality_over_two_pods_equals_the_direct_computation(tmp_path: Path) -> None:
    rng = random.Random(11)
    traffic = {"a": pairs(rng, 30, 0.95), "b": pairs(rng, 170, 0.45)}
    inputs = []
    for pod, seen in traffic.items():
        counts = Counter(seen)
        for t in CLASSES:  # every pair from zero, as the server creates them for known classes
            for p in CLASSES:
                correct = "true" if t == p else "false"
                inputs.append(series(n.FEEDBACK_OUTCOMES, pod, counts[(t, p)], true_class=t,
                                     predicted_class=p, correct=correct))  # fmt: skip
        inputs.append(series(n.FEEDBACK_ROWS, pod, len(seen)))
    everything = [pair for seen in traffic.values() for pair in seen]
    want = classification_stats(everything)
    assert want is not None
    per_pod = [classification_stats(seen) for seen in traffic.values()]
    mean_of_pods = sum(s.accuracy for s in per_pod if s) / 2
    assert abs(mean_of_pods - want.accuracy) > 0.1  # so averaging per-pod ratios would fail

    run_promtool(
        tmp_path,
        inputs,
        [
            *stats_checks(want),
            check(float(len(everything)), n.REC_FEEDBACK_ROWS),
        ],
    )


def test_a_class_never_predicted_counts_as_zero_precision(tmp_path: Path) -> None:
    """Series created lazily (classes unknown at start): only the pairs seen exist."""
    seen = [("0", "0")] * 8 + [("1", "0")] * 4 + [("2", "2")] * 3
    inputs = [
        series(n.FEEDBACK_OUTCOMES, "a", k, true_class=t, predicted_class=p,
               correct="true" if t == p else "false")
        for (t, p), k in Counter(seen).items()
    ]  # fmt: skip
    inputs.append(series(n.FEEDBACK_ROWS, "a", len(seen)))
    want = classification_stats(seen)
    assert want is not None
    run_promtool(
        tmp_path,
        inputs,
        [
            *stats_checks(want),
            check(0.0, n.REC_CLASS_PRECISION, **{n.LABEL_CLASS: "1"}),
        ],
    )


def test_drift_over_two_pods_equals_psi_of_the_pooled_rows(tmp_path: Path) -> None:
    bins = ("0", "1", "2", "3")
    baseline = (0.1, 0.4, 0.3, 0.2)
    rows = {"a": (5, 40, 35, 20), "b": (300, 120, 60, 20)}  # pod b sees shifted inputs
    missing = {"a": 3, "b": 57}
    predicted = {"a": {"0": 20, "1": 50, "2": 30}, "b": {"0": 400, "1": 80, "2": 20}}
    labels = {"a": {"0": 10, "1": 5, "2": 5}, "b": {"0": 60, "1": 30, "2": 10}}
    training = {"0": 0.3, "1": 0.4, "2": 0.3}
    inputs = []
    for pod in ("a", "b"):
        for b, k in zip(bins, rows[pod], strict=True):
            inputs.append(series(n.FEATURE_BIN_ROWS, pod, k, feature="x", bin=b))
        inputs.append(series(n.FEATURE_BIN_ROWS, pod, missing[pod], feature="x", bin=n.BIN_MISSING))
        for b, share in zip(bins, baseline, strict=True):
            inputs.append(gauge(n.FEATURE_BASELINE_SHARE, pod, share, feature="x", bin=b))
        for cls, share in training.items():
            inputs.append(gauge(n.TARGET_BASELINE_SHARE, pod, share, **{"class": cls}))
            inputs.append(series(n.PREDICTION_CLASS, pod, predicted[pod][cls], **{"class": cls}))
            k = labels[pod][cls]
            inputs.append(series(n.FEEDBACK_OUTCOMES, pod, k, true_class=cls, predicted_class=cls,
                                 correct="true"))  # fmt: skip
        inputs.append(series(n.FEEDBACK_ROWS, pod, sum(labels[pod].values())))

    def pooled(per_pod: dict[str, Any], keys: tuple[str, ...]) -> list[float]:
        totals = [sum(per_pod[p][i] for p in per_pod) for i in range(len(keys))]
        return [t / sum(totals) for t in totals]

    x_rows = {p: dict(enumerate(r)) for p, r in rows.items()}
    classes = tuple(training)
    pred = {p: dict(enumerate(predicted[p][c] for c in classes)) for p in predicted}
    lab = {p: dict(enumerate(labels[p][c] for c in classes)) for p in labels}
    all_rows = sum(sum(r) + missing[p] for p, r in rows.items())
    run_promtool(
        tmp_path,
        inputs,
        [
            check(psi(baseline, pooled(x_rows, bins)), n.REC_FEATURE_PSI, feature="x"),
            check(sum(missing.values()) / all_rows, n.REC_FEATURE_MISSING, feature="x"),
            check(psi(list(training.values()), pooled(pred, classes)), n.REC_OUTPUT_PSI),
            check(psi(list(training.values()), pooled(lab, classes)), n.REC_TARGET_PSI),
        ],
    )


def test_regressor_errors_over_two_pods(tmp_path: Path) -> None:
    errors = {"a": [0.5, -1.0, 2.0], "b": [0.25] * 20}
    inputs = []
    for pod, e in errors.items():
        inputs.append(series(n.FEEDBACK_ABS_ERROR, pod, sum(abs(x) for x in e)))
        inputs.append(series(n.FEEDBACK_SQUARED_ERROR, pod, sum(x * x for x in e)))
        inputs.append(series(n.FEEDBACK_ROWS, pod, len(e)))
    flat = [x for e in errors.values() for x in e]
    run_promtool(
        tmp_path,
        inputs,
        [
            check(sum(abs(x) for x in flat) / len(flat), n.REC_MAE),
            check((sum(x * x for x in flat) / len(flat)) ** 0.5, n.REC_RMSE),
        ],
    )


def test_too_few_rows_record_no_psi(tmp_path: Path) -> None:
    """Below minRows (10 here) a window's PSI is noise: no series, so no alert."""
    inputs = [series(n.FEATURE_BIN_ROWS, "a", 3, feature="x", bin="0")]
    inputs += [series(n.FEATURE_BIN_ROWS, "a", 2, feature="x", bin="1")]
    inputs += [gauge(n.FEATURE_BASELINE_SHARE, "a", 0.5, feature="x", bin=b) for b in "01"]
    absent = {"expr": f"absent({n.REC_FEATURE_PSI})", "eval_time": f"{STEPS}m",
              "exp_samples": [{"labels": "{}", "value": 1}]}  # fmt: skip
    run_promtool(tmp_path, inputs, [absent, check(0.6, f"{n.REC_FEATURE_SHARE}", bin="0",
                                                  feature="x")])  # fmt: skip
