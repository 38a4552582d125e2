"""gitops/argocd/modeldeploy.io/ModelDeployment, checked the way Argo CD checks its own
resource_customizations (util/lua/health_test.go): every test in health_test.yaml loads its
inputPath, runs health.lua on it and compares status and message. Here with a real Lua 5.4 and
only the libraries Argo CD opens (argocd.py). The testdata are statuses captured from real runs
(test_real_objects.py keeps them matching what the operator writes now)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.gitops.argocd import HEALTH_DIR, health, health_tests, load

# The states issue 13 names, and the health Argo CD must show for each (docs/gitops.md).
EXPECTED = {
    "testdata/healthy.yaml": "Healthy",
    "testdata/progressing.yaml": "Progressing",
    "testdata/canary_step.yaml": "Progressing",
    "testdata/rolled_back.yaml": "Degraded",
    "testdata/degraded.yaml": "Degraded",
    "testdata/failed.yaml": "Degraded",
    "testdata/awaiting_approval.yaml": "Suspended",
    "testdata/stale_generation.yaml": "Progressing",
    "testdata/no_status.yaml": "Progressing",
}


@pytest.mark.parametrize("case", health_tests(), ids=lambda t: str(t["inputPath"]))
def test_health_test_yaml(case: dict[str, Any]) -> None:
    obj = load(HEALTH_DIR / case["inputPath"])
    want = case["healthStatus"]
    assert health(obj) == (want["status"], want.get("message", ""))


def test_every_state_is_tested_with_the_health_argo_cd_should_show() -> None:
    listed = {t["inputPath"]: t["healthStatus"]["status"] for t in health_tests()}
    assert listed == EXPECTED
    on_disk = {f"testdata/{p.name}" for p in (HEALTH_DIR / "testdata").glob("*.yaml")}
    assert on_disk == set(listed)


def test_the_harness_gives_only_what_argo_cd_gives(tmp_path: Path) -> None:
    """Argo CD opens no string library: a check using one works in plain Lua and not there."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Healthy", message = ("v"):upper()}\n')
    with pytest.raises(AssertionError, match="attempt to call a nil value"):
        health({}, script)
    script.write_text('return {status = "Healthy", message = string.format("%d", 1)}\n')
    with pytest.raises(AssertionError, match="global 'string'"):
        health({}, script)
    script.write_text('return {status = "Fine"}\n')
    assert health({}, script) == ("Unknown", "Lua returned an invalid health status")
    script.write_text(
        "return {status = 'Progressing', message = tostring(obj.metadata.generation) .."
        " ' ' .. tostring(#obj.spec.list) .. ' ' .. tostring(obj.spec.gone)}\n"
    )
    obj = {"metadata": {"generation": 3}, "spec": {"list": ["a", "b"], "gone": None}}
    assert health(obj, script) == ("Progressing", "3 2 nil")


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_an_operator_from_before_the_kstatus_conditions_gets_the_same_health(path: str) -> None:
    """Objects last written by an operator without Reconciling/Stalled (an upgrade in progress):
    the check falls back on the phase and must come to the same status."""
    obj = load(HEALTH_DIR / path)
    status = obj.get("status") or {}
    if "conditions" in status:
        kept = [c for c in status["conditions"] if c["type"] not in ("Reconciling", "Stalled")]
        assert len(kept) < len(status["conditions"]) or status["phase"] == "Healthy"
        status["conditions"] = kept
    assert health(obj)[0] == EXPECTED[path]
