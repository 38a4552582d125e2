"""The chart ships the generated Grafana dashboards as ConfigMaps for Grafana's dashboard sidecar,
only when asked, with the sidecar's label. Real helm; no cluster needed."""

from __future__ import annotations

import json

from tests.integration.chart.conftest import CHART, Tools

FILES = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))


def test_helm_lint_passes_with_dashboards_enabled(tools: Tools) -> None:
    tools.run([tools.helm, "lint", "--strict", CHART, "--set", "dashboards.enabled=true"])


def test_dashboards_are_off_by_default(tools: Tools) -> None:
    docs = tools.helm_template("--namespace", "ops")
    assert [d for d in docs if d["kind"] == "ConfigMap"] == []


def test_enabled_dashboards_render_one_labelled_configmap_per_dashboard_with_valid_json(
    tools: Tools,
) -> None:
    assert len(FILES) == 4
    docs = tools.helm_template("--namespace", "ops", "--set", "dashboards.enabled=true")
    maps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(maps) == len(FILES)
    seen = []
    for cm in maps:
        meta = cm["metadata"]
        assert meta["namespace"] == "ops"
        assert meta["labels"]["grafana_dashboard"] == "1"
        assert "annotations" not in meta
        ((key, text),) = cm["data"].items()
        assert text == (CHART / "dashboards" / key).read_text().rstrip("\n")
        assert json.loads(text)["uid"] == key.removesuffix(".json")
        seen.append(key)
    assert sorted(seen) == FILES
    assert sorted(cm["metadata"]["name"] for cm in maps) == [
        "md-modeldeploy-dashboard-pipeline",
        "md-modeldeploy-dashboard-quality",
        "md-modeldeploy-dashboard-rollouts",
        "md-modeldeploy-dashboard-serving",
    ]


def test_label_annotations_and_namespace_are_configurable(tools: Tools) -> None:
    docs = tools.helm_template(
        "--namespace",
        "ops",
        "--set",
        "dashboards.enabled=true",
        "--set",
        "dashboards.label=grafana.example.com/dashboard",
        "--set-string",
        "dashboards.labelValue=modeldeploy",
        "--set",
        "dashboards.annotations.grafana_folder=Models",
        "--set",
        "dashboards.namespace=monitoring",
    )
    maps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(maps) == len(FILES)
    for cm in maps:
        meta = cm["metadata"]
        assert meta["namespace"] == "monitoring"
        assert meta["labels"]["grafana.example.com/dashboard"] == "modeldeploy"
        assert "grafana_dashboard" not in meta["labels"]
        assert meta["annotations"] == {"grafana_folder": "Models"}


def test_schema_refuses_unknown_dashboard_keys_and_bad_label_values(tools: Tools) -> None:
    for bad in ("dashboards.folder=x", "dashboards.labelValue=not a label value"):
        proc = tools.run([tools.helm, "template", "md", CHART, "--set-string", bad], check=False)
        assert proc.returncode != 0, bad
        assert "dashboards" in proc.stderr, proc.stderr
