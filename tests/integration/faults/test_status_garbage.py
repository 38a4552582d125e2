"""Status filled with garbage through the status subresource, on the private stack: what is
refused there is refused by the CRD exactly as this tree has it (the session's cluster is shared
with other sessions, which may apply theirs). In a module of its own so that it runs after the
shared-stack cases, while the private stack starts."""

from __future__ import annotations

import time

import pytest
from kubernetes.client.exceptions import ApiException

from modeldeploy.api import reasons as r
from tests.integration.faults.conftest import Private, Story
from tests.integration.faults.test_children_and_status import replace_status
from tests.integration.operator.test_high_availability import reconciled

pytestmark = pytest.mark.faults


def test_garbage_status_is_replaced_by_the_truth_and_changes_nothing_that_serves(
    private: Private,
) -> None:
    """On the private stack: the refusals below are the CRD's, as this tree has it."""
    p = private
    namespace = p.namespace()
    op = p.operator([namespace])
    try:
        model = p.registry.new_model(versions=1)
        p.registry.set_alias(model, "champion", "1")
        p.kube.create_md(
            namespace,
            "m",
            {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1h"}},
        )
        p.kube.wait_phase(namespace, "m", r.HEALTHY, serving="1", timeout=90)
        story = Story(p.kube, namespace, "m")
        generation = p.kube.deployment(namespace, "m").metadata.generation
        # What the operator could not write back is the API server's to refuse (the CRD's
        # status schema): wrong types, and history entries without a version, start or outcome
        # (before the schema required them, such an entry wedged every reconcile: each status
        # write the operator made was refused with a 422).
        for refused_status in (
            {"phase": 7, "history": "lots"},
            {"history": [{"outcome": r.OUTCOME_SUCCEEDED}]},
        ):
            with pytest.raises(ApiException) as refused:
                replace_status(p.kube, namespace, "m", refused_status)
            assert refused.value.status == 422, refused_status
        garbage = {
            "phase": r.FAILED,
            "servingVersion": "999",
            "resolvedVersion": "nope",
            "observedGeneration": 999,
            "selector": "@nothing",
            "modelUri": "models:/elsewhere/1",
            "conditions": [{"type": "Ready", "status": "False", "reason": "Garbage"}],
            "history": [
                {"version": "999", "startedAt": "1999-01-01T00:00:00Z", "outcome": "Progressing"}
            ],
        }
        t0 = time.monotonic()
        replace_status(p.kube, namespace, "m", garbage)
        p.kube.wait_phase(namespace, "m", r.HEALTHY, serving="1", timeout=30)
        print(f"FAULT-TIMING status-garbage seconds={time.monotonic() - t0:.1f}")
        reconciled(p.kube, namespace, "m")
        st = story.status()
        assert p.kube.deployment(namespace, "m").metadata.generation == generation
        assert (st["resolvedVersion"], st["observedGeneration"]) == ("1", 1)
        assert st["selector"] == "@champion"
        assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
        assert not [c for c in st["conditions"] if c.get("reason") == "Garbage"]
        # The invented rollout of "999" is closed, not acted on; v1 is recorded as what serves
        # (with a second RolloutStarted Event: the garbage said something else was rolling out).
        assert story.history() == [("999", r.OUTCOME_SUPERSEDED), ("1", r.OUTCOME_SUCCEEDED)]
        assert story.started("1") == 2
        assert story.started("999") == 0
    finally:
        op.stop()
