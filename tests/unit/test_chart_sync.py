"""The chart's and the kustomize base's CRDs are generated copies of crds/, and the chart's
pipeline rules are generated from their Python function (one source per fact)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart", REPO / "dev" / "sync-chart.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_crd_in_crds_has_a_copy_in_the_chart_and_the_kustomize_base() -> None:
    sync = load_sync()
    sources = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sources, "crds/ holds no CRD"
    for target in sync.TARGETS:
        copies = sorted(p.name for p in target.glob("*.yaml") if p.name != "kustomization.yaml")
        assert copies == sources, (
            f"{target.relative_to(REPO)} does not hold exactly the CRDs of crds/; "
            "run `make chart-sync`"
        )


def test_generated_crd_copies_equal_crds_byte_for_byte_after_their_header() -> None:
    sync = load_sync()
    for source in sorted((REPO / "crds").glob("*.yaml")):
        for target in sync.TARGETS:
            copy = (target / source.name).read_text()
            header = sync.HEADER.format(name=source.name)
            assert copy.startswith(header), f"{target / source.name} lacks the generated header"
            assert copy[len(header) :] == source.read_text(), (
                f"{(target / source.name).relative_to(REPO)} differs from crds/{source.name}; "
                "run `make chart-sync`"
            )


def test_chart_pipeline_rules_are_the_rule_function_output_with_its_defaults() -> None:
    """The chart's PrometheusRule body is generated from modeldeploy.render.pipeline_rules; a
    change to the function without `make chart-sync` fails here."""
    import yaml

    from modeldeploy.render.pipeline_rules import pipeline_rule_groups

    sync = load_sync()
    path = sync.PIPELINE_RULES
    assert path.exists(), f"{path.relative_to(REPO)} is missing; run `make chart-sync`"
    text = path.read_text()
    assert text.startswith(sync.PIPELINE_RULES_HEADER), f"{path} lacks the generated header"
    assert yaml.safe_load(text) == {"groups": pipeline_rule_groups()}, (
        f"{path.relative_to(REPO)} differs from pipeline_rule_groups(); run `make chart-sync`"
    )
    assert text == sync.pipeline_rules_text()
    template = (REPO / "charts" / "modeldeploy" / "templates" / "pipeline-rules.yaml").read_text()
    assert '.Files.Get "files/pipeline-rules.yaml"' in template
    assert "if .Values.pipelineAlerts.enabled" in template


def test_check_mode_reports_pipeline_rules_that_differ_from_the_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync = load_sync()
    changed = sync.pipeline_rules_text().replace("for: 5m", "for: 9m")
    monkeypatch.setattr(sync, "pipeline_rules_text", lambda: changed)
    assert sync.differences() == [
        "differs from its source: charts/modeldeploy/files/pipeline-rules.yaml"
    ]
    assert sync.main(["--check"]) == 1
