"""What a serving Deployment reports, reduced to what the rollout rules need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy import names
from modeldeploy.api import reasons as r
from modeldeploy.render import objects as render


@dataclass(frozen=True)
class DeploymentState:
    """What the serving Deployment reports, reduced to what the rules need."""

    version: str | None
    model_uri: str | None
    run_id: str | None
    replicas: int
    updated: int
    ready: int
    available: int
    total: int
    generation: int
    observed_generation: int
    deadline_exceeded: bool
    autoscaled: bool = False  # applied without replicas, for a HorizontalPodAutoscaler
    # Its pod template carries modeldeploy.io/track (Deployments applied by operators before
    # progressive delivery do not, until their next rollout).
    tracked: bool = True

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> DeploymentState:
        meta, spec, st = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
        template = spec.get("template", {}).get("metadata", {})
        labels, ann = template.get("labels") or {}, template.get("annotations") or {}
        stalled = any(
            # The Deployment controller's own condition, which our names mirror.
            c.get("type") == r.COND_PROGRESSING and c.get("reason") == r.PROGRESS_DEADLINE_EXCEEDED
            for c in st.get("conditions") or ()
        )
        return cls(
            version=labels.get(names.LABEL_MODEL_VERSION),
            model_uri=ann.get(render.ANN_MODEL_URI),
            run_id=ann.get(render.ANN_RUN_ID),
            replicas=int(spec.get("replicas", 1)),
            updated=int(st.get("updatedReplicas") or 0),
            ready=int(st.get("readyReplicas") or 0),
            available=int(st.get("availableReplicas") or 0),
            total=int(st.get("replicas") or 0),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(st.get("observedGeneration") or 0),
            deadline_exceeded=stalled,
            autoscaled=(meta.get("annotations") or {}).get(render.ANN_AUTOSCALED) == "true",
            tracked=names.LABEL_TRACK in labels,
        )

    def all_updated(self) -> bool:
        """Every pod it has runs its current template (an autoscaler's new pods included, ready
        or not): what a label of the template says holds for all of its pods."""
        return self.observed_generation >= self.generation and self.updated >= self.total

    def complete(self, replicas: int) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.replicas == replicas
            and self.updated == replicas
            and self.available == replicas
            and self.total == replicas
        )
