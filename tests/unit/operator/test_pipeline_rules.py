"""The pipeline alert rules, checked and run by promtool against pushed-style series."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import names
from modeldeploy.render.pipeline_rules import pipeline_rule_groups
from tests.unit.operator.test_render import promtool

ALERTS = {
    names.ALERT_PIPELINE_STAGE_FAILED,
    names.ALERT_PIPELINE_STAGE_STALE,
    names.ALERT_PIPELINE_DATA_QUALITY_FAILED,
}
# As the Pushgateway exposes them with honor_labels: the grouping key's labels on every series.
GROUP = f'job="{names.PIPELINE_JOB}", instance="", pipeline="fraud"'


def series(name: str, stage: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{{GROUP}, stage="{stage}"{extra}}}', "values": values}


def run_promtool(tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{out}"
    return out


def test_rules_pass_promtool_check_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": pipeline_rule_groups()}))
    assert "3 rules found" in run_promtool(tmp_path, "check", "rules", "rules.yaml")


def test_rule_names_come_from_names_and_labels_are_added_to_every_alert() -> None:
    (group,) = pipeline_rule_groups(labels={"team": "ml"}, failed_for="0s")
    assert {r["alert"] for r in group["rules"]} == ALERTS
    assert all(r["labels"]["team"] == "ml" for r in group["rules"])
    assert group["rules"][0]["for"] == "0s"


def alert(name: str, stage: str, **labels: str) -> dict[str, Any]:
    """The alert as promtool reports it, with the annotations the rules render."""
    who = f"fraud/{stage}"
    annotations = {
        names.ALERT_PIPELINE_STAGE_FAILED: {
            "summary": f"Pipeline stage {who} failed",
            "description": f"The last run of {who} ended with an exception.",
        },
        names.ALERT_PIPELINE_STAGE_STALE: {
            "summary": f"Pipeline stage {who} has not succeeded within its expected period",
            "description": f"Last success {labels.pop('age', '')} ago.",
        },
        names.ALERT_PIPELINE_DATA_QUALITY_FAILED: {
            "summary": f"Data-quality check {labels.get('check')} failed in {who}",
            "description": "The last run of the stage reported the check as failed.",
        },
    }[name]
    severity = "critical" if name == names.ALERT_PIPELINE_STAGE_FAILED else "warning"
    return {
        "exp_labels": {
            "alertname": name,
            "pipeline": "fraud",
            "stage": stage,
            "severity": severity,
            **labels,
        },
        "exp_annotations": annotations,
    }


def test_promtool_fires_failed_stale_and_data_quality_alerts_only_for_the_bad_stages(
    tmp_path: Path,
) -> None:
    """At 15m: `train` failed, `etl` last succeeded at 0 with a 5m period (stale), `score`
    succeeded a minute ago within its period, `report` pushed no period (never stale), and
    `etl`'s null_ratio check failed while its schema check passed."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": pipeline_rule_groups()}))
    minute = 60
    input_series = [
        series(names.PIPELINE_STAGE_SUCCESS, "train", "0x20"),
        series(names.PIPELINE_STAGE_SUCCESS, "etl", "1x20"),
        series(names.PIPELINE_STAGE_LAST_SUCCESS, "etl", "0x20"),
        series(names.PIPELINE_STAGE_EXPECTED_PERIOD, "etl", f"{5 * minute}x20"),
        series(names.PIPELINE_STAGE_SUCCESS, "score", "1x20"),
        series(names.PIPELINE_STAGE_LAST_SUCCESS, "score", f"0+{minute}x20"),
        series(names.PIPELINE_STAGE_EXPECTED_PERIOD, "score", f"{5 * minute}x20"),
        series(names.PIPELINE_STAGE_LAST_SUCCESS, "report", "0x20"),
        series(names.PIPELINE_CHECK_PASSED, "etl", "0x20", check="null_ratio"),
        series(names.PIPELINE_CHECK_PASSED, "etl", "1x20", check="schema"),
    ]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": names.ALERT_PIPELINE_STAGE_FAILED,
                        "exp_alerts": [alert(names.ALERT_PIPELINE_STAGE_FAILED, "train")],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": names.ALERT_PIPELINE_STAGE_STALE,
                        "exp_alerts": [
                            alert(names.ALERT_PIPELINE_STAGE_STALE, "etl", age="15m 0s")
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": names.ALERT_PIPELINE_DATA_QUALITY_FAILED,
                        "exp_alerts": [
                            alert(
                                names.ALERT_PIPELINE_DATA_QUALITY_FAILED,
                                "etl",
                                check="null_ratio",
                            )
                        ],
                    },
                    # Before its `for` (1m) has passed, a failed stage is pending, not firing.
                    {
                        "eval_time": "0m",
                        "alertname": names.ALERT_PIPELINE_STAGE_FAILED,
                        "exp_alerts": [],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    run_promtool(tmp_path, "test", "rules", "test.yaml")


@pytest.mark.parametrize("period, fires", [(3600, False), (60, True)])
def test_stale_rule_compares_the_age_of_the_last_success_with_the_pushed_period(
    tmp_path: Path, period: int, fires: bool
) -> None:
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": pipeline_rule_groups(stale_for="0s")})
    )
    exp = [alert(names.ALERT_PIPELINE_STAGE_STALE, "etl", age="5m 0s")] if fires else []
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series(names.PIPELINE_STAGE_LAST_SUCCESS, "etl", "0x10"),
                    series(names.PIPELINE_STAGE_EXPECTED_PERIOD, "etl", f"{period}x10"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": names.ALERT_PIPELINE_STAGE_STALE,
                        "exp_alerts": exp,
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    run_promtool(tmp_path, "test", "rules", "test.yaml")


def test_selector_narrows_every_series_the_rules_read(tmp_path: Path) -> None:
    (group,) = pipeline_rule_groups(selector='pipeline="only-me"')
    for rule in group["rules"]:
        metrics = [m for m in rule["expr"].split() if m.startswith("(modeldeploy_pipeline_")]
        assert metrics and all(m.endswith('{pipeline="only-me"})') for m in metrics), rule["expr"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    assert "3 rules found" in run_promtool(tmp_path, "check", "rules", "rules.yaml")
