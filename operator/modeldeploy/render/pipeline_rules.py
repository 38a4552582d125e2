"""The default alert rules for pipeline monitoring (modeldeploy.tracking.pipeline), as plain dicts.

One source for three consumers: the local stack's Prometheus loads them (dev/stack.py), the chart
ships them as a generated file (dev/sync-chart.py → charts/modeldeploy/files/pipeline-rules.yaml,
checked by tests/unit/test_chart_sync.py), and the promtool tests run them.

Every expression aggregates `by (pipeline, stage)`: the Pushgateway's series also carry `job`
and `instance`, which differ with the scrape setup (honor_labels or not) and must not split or
hide an alert.
"""

from __future__ import annotations

from typing import Any

from modeldeploy import names

GROUP_NAME = "modeldeploy.pipeline"
# Production defaults. A pushed figure is a state, not a rate, so it does not flap; the `for`
# only rides out a missed scrape or a stage re-run right after a failure.
FAILED_FOR = "1m"
STALE_FOR = "5m"
DATA_QUALITY_FOR = "1m"


def pipeline_rule_groups(
    *,
    failed_for: str = FAILED_FOR,
    stale_for: str = STALE_FOR,
    data_quality_for: str = DATA_QUALITY_FOR,
    group: str = GROUP_NAME,
    labels: dict[str, str] | None = None,
    selector: str = "",
) -> list[dict[str, Any]]:
    """The rule group(s) for `groups:` of a Prometheus rule file or a PrometheusRule's spec.

    The stale rule needs no per-stage configuration: a stage pushes its own expected period,
    and a stage that pushed none is never stale. `labels` are added to every alert (e.g. a
    routing label). `selector` (label matchers such as `pipeline="fraud"`) narrows every
    series the rules read: a test's short-`for` copy then sees only its own pipeline."""
    by = f"{names.PIPELINE_LABEL_PIPELINE}, {names.PIPELINE_LABEL_STAGE}"
    extra = dict(labels or {})
    who = "{{ $labels.pipeline }}/{{ $labels.stage }}"
    sel = f"{{{selector}}}" if selector else ""
    rules: list[dict[str, Any]] = [
        {
            "alert": names.ALERT_PIPELINE_STAGE_FAILED,
            "expr": f"max by ({by}) ({names.PIPELINE_STAGE_SUCCESS}{sel}) == 0",
            "for": failed_for,
            "labels": {**extra, "severity": "critical"},
            "annotations": {
                "summary": f"Pipeline stage {who} failed",
                "description": f"The last run of {who} ended with an exception.",
            },
        },
        {
            "alert": names.ALERT_PIPELINE_STAGE_STALE,
            "expr": (
                f"time() - max by ({by}) ({names.PIPELINE_STAGE_LAST_SUCCESS}{sel})"
                f" > on ({by}) max by ({by}) ({names.PIPELINE_STAGE_EXPECTED_PERIOD}{sel})"
            ),
            "for": stale_for,
            "labels": {**extra, "severity": "warning"},
            "annotations": {
                "summary": f"Pipeline stage {who} has not succeeded within its expected period",
                "description": "Last success {{ $value | humanizeDuration }} ago.",
            },
        },
        {
            "alert": names.ALERT_PIPELINE_DATA_QUALITY_FAILED,
            "expr": (
                f"min by ({by}, {names.PIPELINE_LABEL_CHECK}) ({names.PIPELINE_CHECK_PASSED}{sel})"
                " == 0"
            ),
            "for": data_quality_for,
            "labels": {**extra, "severity": "warning"},
            "annotations": {
                "summary": f"Data-quality check {{{{ $labels.check }}}} failed in {who}",
                "description": "The last run of the stage reported the check as failed.",
            },
        },
    ]
    return [{"name": group, "rules": rules}]
