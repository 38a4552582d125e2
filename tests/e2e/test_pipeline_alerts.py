"""Pipeline stages push to the real Pushgateway; the stack's Prometheus scrapes it, the pipeline
rules fire and Alertmanager receives the alerts.

Each test uses its own pipeline name and its own copy of the rules, narrowed to that pipeline
with short `for` values (the shipped defaults wait minutes); its Pushgateway groups are deleted
afterwards, so tests never see each other's series and the alerts resolve."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import pytest
import requests
from prometheus_client import delete_from_gateway

from modeldeploy import names
from modeldeploy.render.pipeline_rules import pipeline_rule_groups
from modeldeploy.tracking import pipeline_stage
from tests.conftest import TestStack, wait_for


@dataclass
class Pipeline:
    name: str
    gateway: str
    prometheus: str
    alertmanager: str
    stages: list[str]

    def stage(self, stage: str, **kwargs: Any) -> Any:
        self.stages.append(stage)
        return pipeline_stage(
            stage, pipeline=self.name, gateway=self.gateway, strict=True, **kwargs
        )

    def firing(self, alert: str) -> list[dict[str, Any]]:
        """This pipeline's alerts named `alert` that Prometheus reports as firing."""
        resp = requests.get(f"{self.prometheus}/api/v1/alerts", timeout=5).json()
        return [
            a
            for a in resp["data"]["alerts"]
            if a["labels"].get("alertname") == alert
            and a["labels"].get(names.PIPELINE_LABEL_PIPELINE) == self.name
            and a["state"] == "firing"
        ]

    def received(self, alert: str) -> list[dict[str, Any]]:
        """This pipeline's active alerts named `alert` that Alertmanager holds."""
        found = requests.get(f"{self.alertmanager}/api/v2/alerts", timeout=5).json()
        return [
            a
            for a in found
            if a["labels"].get("alertname") == alert
            and a["labels"].get(names.PIPELINE_LABEL_PIPELINE) == self.name
            and a["status"]["state"] == "active"
        ]


@pytest.fixture
def pipeline(
    stack: TestStack, prometheus_url: str, alertmanager_url: str, pushgateway_url: str
) -> Iterator[Pipeline]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    rules = f"pipeline-test-{name}"
    stack.stack.write_rules(
        rules,
        pipeline_rule_groups(
            failed_for="0s",
            stale_for="0s",
            data_quality_for="0s",
            group=f"modeldeploy.pipeline.{name}",
            selector=f'{names.PIPELINE_LABEL_PIPELINE}="{name}"',
        ),
    )
    p = Pipeline(name, pushgateway_url, prometheus_url, alertmanager_url, [])
    yield p
    stack.stack.remove_rules(rules)
    for stage in set(p.stages):
        grouping = {names.PIPELINE_LABEL_PIPELINE: name, names.PIPELINE_LABEL_STAGE: stage}
        delete_from_gateway(pushgateway_url, names.PIPELINE_JOB, grouping_key=grouping)


def test_failed_stage_fires_in_prometheus_and_reaches_alertmanager(pipeline: Pipeline) -> None:
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="source table missing"), pipeline.stage("etl") as s:
        s.rows_in(0)
        s.check("source_present", passed=False)
        raise RuntimeError("source table missing")

    (firing,) = wait_for(
        lambda: pipeline.firing(names.ALERT_PIPELINE_STAGE_FAILED),
        timeout=45,
        what="ModelPipelineStageFailed firing in Prometheus",
    )
    in_prometheus = time.monotonic() - t0
    assert firing["labels"][names.PIPELINE_LABEL_STAGE] == "etl"
    (received,) = wait_for(
        lambda: pipeline.received(names.ALERT_PIPELINE_STAGE_FAILED),
        timeout=30,
        what="ModelPipelineStageFailed received by Alertmanager",
    )
    in_alertmanager = time.monotonic() - t0
    assert received["labels"]["severity"] == "critical"
    (quality,) = wait_for(
        lambda: pipeline.firing(names.ALERT_PIPELINE_DATA_QUALITY_FAILED),
        timeout=30,
        what="ModelPipelineDataQualityFailed firing",
    )
    assert quality["labels"][names.PIPELINE_LABEL_CHECK] == "source_present"
    print(
        f"\nfailed stage: firing in Prometheus after {in_prometheus:.1f}s, "
        f"in Alertmanager after {in_alertmanager:.1f}s"
    )


def test_stage_without_success_within_its_expected_period_fires_stale(pipeline: Pipeline) -> None:
    with pipeline.stage("train", expected_every=1):
        pass
    t0 = time.monotonic()
    (firing,) = wait_for(
        lambda: pipeline.firing(names.ALERT_PIPELINE_STAGE_STALE),
        timeout=45,
        what="ModelPipelineStageStale firing in Prometheus",
    )
    in_prometheus = time.monotonic() - t0
    assert firing["labels"][names.PIPELINE_LABEL_STAGE] == "train"
    wait_for(
        lambda: pipeline.received(names.ALERT_PIPELINE_STAGE_STALE),
        timeout=30,
        what="ModelPipelineStageStale received by Alertmanager",
    )
    # The last run succeeded: stale is about time, not about a failure.
    assert not pipeline.firing(names.ALERT_PIPELINE_STAGE_FAILED)
    print(f"\nstale stage: firing in Prometheus after {in_prometheus:.1f}s")


def test_a_failed_run_keeps_the_last_success_so_staleness_counts_from_it(
    pipeline: Pipeline,
) -> None:
    """Pushes add to the stage's group: the failure does not erase the earlier success."""
    with pipeline.stage("score", expected_every=3600):
        pass
    with pytest.raises(ValueError), pipeline.stage("score", expected_every=3600):
        raise ValueError("bad batch")

    def series(metric: str) -> list[dict[str, Any]]:
        query = f'{metric}{{{names.PIPELINE_LABEL_PIPELINE}="{pipeline.name}"}}'
        resp = requests.get(
            f"{pipeline.prometheus}/api/v1/query", params={"query": query}, timeout=5
        ).json()
        return list(resp["data"]["result"])

    wait_for(
        lambda: series(names.PIPELINE_STAGE_LAST_FAILURE),
        timeout=30,
        what="the failure scraped",
    )
    (success,) = series(names.PIPELINE_STAGE_LAST_SUCCESS)
    (failure,) = series(names.PIPELINE_STAGE_LAST_FAILURE)
    assert float(success["value"][1]) <= float(failure["value"][1])
    # honor_labels: the pushed job label, not the scrape job's name.
    assert success["metric"]["job"] == names.PIPELINE_JOB
    wait_for(
        lambda: pipeline.firing(names.ALERT_PIPELINE_STAGE_FAILED),
        timeout=30,
        what="the failure firing",
    )
    assert not pipeline.firing(names.ALERT_PIPELINE_STAGE_STALE)


def test_stage_logs_the_same_figures_to_the_mlflow_run(pipeline: Pipeline, mlflow_uri: str) -> None:
    mlflow.set_tracking_uri(mlflow_uri)  # process-wide: other tests may have pointed it elsewhere
    mlflow.set_experiment(f"pipeline-{pipeline.name}")
    with mlflow.start_run() as run, pipeline.stage("etl", mlflow=True) as s:
        s.rows_in(100)
        s.rows_out(97)
        s.check("no_null_ids", passed=True)
    data = mlflow.get_run(run.info.run_id).data
    assert data.metrics["pipeline.etl.rows_in"] == 100
    assert data.metrics["pipeline.etl.rows_out"] == 97
    assert data.metrics["pipeline.etl.check.no_null_ids"] == 1
    assert data.tags["pipeline.etl.outcome"] == "success"
