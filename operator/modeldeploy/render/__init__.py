"""Pure builders of the child objects of a ModelDeployment (plain dicts, one function each)."""

from modeldeploy.render.objects import (
    RenderContext,
    build_deployment,
    build_prometheus_rule,
    build_service,
    build_service_monitor,
    selector_labels,
)

__all__ = [
    "RenderContext",
    "build_deployment",
    "build_prometheus_rule",
    "build_service",
    "build_service_monitor",
    "selector_labels",
]
