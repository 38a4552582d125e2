"""What the Prometheus Operator and Prometheus would make of a ServiceMonitor, for one pod: pure
functions, no cluster, no Prometheus. dev/podrunner.py feeds them the objects it listed and turns
the answer into a file-SD target.

Its one job: **ServiceMonitor → the target labels of one pod** (or None: not scraped).

* Selection, as the Operator's generated scrape config selects: the ServiceMonitor's
  `namespaceSelector` (`any: true` takes precedence over `matchNames`; neither means the
  ServiceMonitor's own namespace) covers the pod's namespace, its `selector` (a metav1
  LabelSelector: `matchLabels` and `matchExpressions` In/NotIn/Exists/DoesNotExist, ANDed; `{}`
  selects every Service) selects a Service there, and that Service's non-empty selector matches
  the pod. An endpoint's `port` must name a port of the Service.
* Labels: the `__meta_kubernetes_*` labels of the endpoints role, then the Operator's own
  relabelings (namespace, service, pod, container, `job` = the Service name unless the Service
  has a non-empty value for `jobLabel`, `endpoint` = the port name), then the endpoint's
  `relabelings` with Prometheus' semantics: defaults action `replace`, separator `;`, regex
  `(.*)` anchored at both ends, replacement `$1`; a missing source label is the empty string; an
  empty value is an absent label; actions replace, keep, drop, keepequal, dropequal, hashmod,
  labelmap, labeldrop, labelkeep, lowercase, uppercase, in either case.

The documents these follow:
* Prometheus' `<relabel_config>`:
  https://prometheus.io/docs/prometheus/latest/configuration/configuration/#relabel_config
* The Prometheus Operator's API reference (`ServiceMonitorSpec`, `Endpoint`, `RelabelConfig`,
  `NamespaceSelector`): https://prometheus-operator.dev/docs/api-reference/api/
* The Operator's generated relabelings: `generateServiceMonitorConfig` in
  prometheus-operator's `pkg/prometheus/promcfg.go`; Prometheus' evaluator:
  `model/relabel/relabel.go` (its `relabel_test.go` table is ported in
  tests/unit/dev/test_monitoring_emulation.py).

Known differences from the real thing are listed in that test module (strict xfails).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

# The serving container, as render/objects.py names it.
CONTAINER = "model"

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEMPLATE_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+)|\$)")


def serving_container(pod: Any) -> Any:
    """The pod's container named `model`, else its first (the one a process stands in for)."""
    return next((c for c in pod.spec.containers if c.name == CONTAINER), pod.spec.containers[0])


def public_labels(labels: Mapping[str, str]) -> str:
    """`k=v,...` without the `__` labels, for logs."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if not k.startswith("__"))


# --- selection ---------------------------------------------------------------------------------
def _subset(small: Mapping[str, str], big: Mapping[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions, ANDed) against labels; the empty
    selector selects everything, as a ServiceMonitor's `selector: {}` does."""
    if not _subset(selector.get("matchLabels") or {}, labels):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
        if not ok:
            return False
    return True


def covers_namespace(sm: Mapping[str, Any], namespace: str) -> bool:
    """A ServiceMonitor's `namespaceSelector`: `any` first, then `matchNames`, by default its own
    namespace."""
    nss = (sm.get("spec") or {}).get("namespaceSelector") or {}
    return bool(nss.get("any")) or namespace in (
        nss.get("matchNames") or [sm["metadata"]["namespace"]]
    )


def monitored_target_labels(
    pod: Any, address: str, monitors: list[dict[str, Any]], services: list[Any]
) -> dict[str, str] | None:
    """The first ServiceMonitor endpoint that reaches `pod` through a Service, relabeled the way
    the Prometheus Operator's generated scrape config would; None when nothing selects it.

    ServiceMonitors are tried by (namespace, name), Services by name. (The real thing makes one
    target per matching endpoint; locally a process has one set of labels.)"""
    namespace = pod.metadata.namespace
    pod_labels = pod.metadata.labels or {}
    for sm in sorted(monitors, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"])):
        if not covers_namespace(sm, namespace):
            continue
        spec = sm.get("spec") or {}
        for svc in sorted(services, key=lambda s: str(s.metadata.name)):
            svc_sel = svc.spec.selector or {}
            if (
                svc.metadata.namespace != namespace
                or not svc_sel
                or not _subset(svc_sel, pod_labels)
                or not selects(spec.get("selector") or {}, svc.metadata.labels or {})
            ):
                continue
            for ep in spec.get("endpoints") or []:
                labels = endpoint_target_labels(pod, address, sm, svc, ep)
                if labels is not None:
                    return labels
    return None


# --- labels ------------------------------------------------------------------------------------
def _sanitize(name: str) -> str:
    """Kubernetes SD's label-name sanitising: anything but [a-zA-Z0-9_] becomes `_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def sd_meta_labels(
    kind: str, labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None
) -> dict[str, str]:
    """Prometheus' Kubernetes service discovery labels for one object's labels and annotations
    (`kind` is `pod` or `service`): `__meta_kubernetes_<kind>_label_<name>` and
    `..._annotation_<name>` carry the value, `..._labelpresent_<name>` and
    `..._annotationpresent_<name>` are "true"; names are sanitised."""
    out: dict[str, str] = {}
    for what, items in (("label", labels), ("annotation", annotations)):
        for key, value in (items or {}).items():
            name = _sanitize(key)
            out[f"__meta_kubernetes_{kind}_{what}_{name}"] = value
            out[f"__meta_kubernetes_{kind}_{what}present_{name}"] = "true"
    return out


def endpoint_target_labels(
    pod: Any, address: str, sm: dict[str, Any], svc: Any, ep: dict[str, Any]
) -> dict[str, str] | None:
    """One ServiceMonitor endpoint's target labels for `pod` behind `svc`: the `__meta_kubernetes_*`
    labels of the endpoints role, the Prometheus Operator's own labels (namespace, service, pod,
    container, endpoint, job), then the endpoint's `relabelings`. None when the endpoint names a
    port the Service does not have, or a keep/drop removes the target."""
    port_name = ep.get("port")
    if port_name and port_name not in {p.name for p in svc.spec.ports or []}:
        return None
    container = serving_container(pod)
    meta = {
        "__address__": address,
        "__metrics_path__": ep.get("path") or "/metrics",
        "__meta_kubernetes_namespace": pod.metadata.namespace,
        "__meta_kubernetes_service_name": svc.metadata.name,
        "__meta_kubernetes_pod_name": pod.metadata.name,
        "__meta_kubernetes_pod_container_name": container.name,
        "__meta_kubernetes_pod_node_name": pod.spec.node_name or "",
        "__meta_kubernetes_pod_ip": "127.0.0.1",
        "__meta_kubernetes_pod_uid": pod.metadata.uid or "",
        "__meta_kubernetes_endpoint_port_name": port_name or "",
        **sd_meta_labels("pod", pod.metadata.labels, pod.metadata.annotations),
        **sd_meta_labels("service", svc.metadata.labels, svc.metadata.annotations),
    }
    # The Operator's generated relabelings: job is the Service name unless the Service has a
    # non-empty value for the ServiceMonitor's jobLabel.
    job_label = (sm.get("spec") or {}).get("jobLabel")
    job = (svc.metadata.labels or {}).get(job_label, "") if job_label else ""
    meta.update(
        namespace=pod.metadata.namespace,
        service=svc.metadata.name,
        pod=pod.metadata.name,
        container=container.name,
        job=job or svc.metadata.name,
    )
    if port_name:
        meta["endpoint"] = port_name
    relabeled = relabel(meta, ep.get("relabelings") or [])
    if relabeled is None:
        return None
    out = {k: v for k, v in relabeled.items() if not k.startswith("__") and v != ""}
    if relabeled.get("__metrics_path__", "/metrics") != "/metrics":
        out["__metrics_path__"] = relabeled["__metrics_path__"]
    return out


def default_target_labels(namespace: str, pod: str, modeldeployment: str) -> dict[str, str]:
    """What our own ServiceMonitor gives (Service named after the ModelDeployment): the labels
    used when the monitoring CRDs are not installed."""
    return {
        "namespace": namespace,
        "service": modeldeployment,
        "pod": pod,
        "container": CONTAINER,
        "endpoint": "http",
        "job": modeldeployment,
        "modeldeployment": modeldeployment,
    }


# --- relabeling --------------------------------------------------------------------------------
def expand_template(template: str, match: re.Match[str]) -> str:
    """Go's `Regexp.Expand`, which Prometheus uses for `replacement` and `targetLabel`: `$1`,
    `${1}`, `$name`, `${name}`; `$$` is a literal `$`; `$name` takes the longest run of word
    characters (`$1x` is the group named `1x`); a group that does not exist or did not take part
    expands to nothing; a `$` not followed by a name stays as it is."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        try:
            value = match.group(int(name) if name.isdigit() else name)
        except IndexError:  # no such group
            return ""
        return value or ""

    return _TEMPLATE_VAR.sub(sub, template)


def _hashmod(value: str, modulus: int) -> int:
    """Prometheus' hashmod: the low 64 bits of the value's MD5, big-endian, modulo `modulus`."""
    digest = hashlib.md5(value.encode()).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def relabel(labels: Mapping[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus relabeling of one target with the Prometheus Operator's field names
    (`sourceLabels`, `separator`, `targetLabel`, `regex`, `modulus`, `replacement`, `action`;
    actions in either case); None when a keep, drop, keepequal or dropequal removes the target.

    Defaults as Prometheus': action replace, separator `;`, regex `(.*)` anchored at both ends,
    replacement `$1`. A label with an empty value is an absent label."""
    out = dict(labels)
    for cfg in configs:
        action = str(cfg.get("action", "replace")).lower()
        regex = re.compile(f"^(?:{cfg.get('regex', '(.*)')})$")
        source = str(cfg.get("separator", ";")).join(
            out.get(name, "") for name in cfg.get("sourceLabels") or []
        )
        target = str(cfg.get("targetLabel", ""))
        replacement = str(cfg.get("replacement", "$1"))
        if action == "replace":
            m = regex.match(source)
            if m is None:
                continue  # no match, no change
            name = expand_template(target, m)
            value = expand_template(replacement, m)
            if not _LABEL_NAME.fullmatch(name) or not value:
                out.pop(target, None)
            else:
                out[name] = value
        elif action in ("lowercase", "uppercase"):
            out[target] = source.lower() if action == "lowercase" else source.upper()
        elif action == "hashmod":
            out[target] = str(_hashmod(source, int(cfg["modulus"])))
        elif action in ("keep", "drop"):
            if bool(regex.match(source)) != (action == "keep"):
                return None
        elif action in ("keepequal", "dropequal"):
            if (out.get(target, "") == source) != (action == "keepequal"):
                return None
        elif action == "labelmap":
            for name, value in list(out.items()):
                m = regex.match(name)
                if m:
                    out[expand_template(replacement, m)] = value
        elif action in ("labeldrop", "labelkeep"):
            drop = action == "labeldrop"
            out = {k: v for k, v in out.items() if bool(regex.match(k)) != drop}
        else:
            raise ValueError(f"relabel action {action!r} is not supported locally")
    return {k: v for k, v in out.items() if v != ""}
