"""`modeldeploy operator`: flags and environment → OperatorConfig → kopf.run."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from typing import Any

from modeldeploy.api.durations import parse_duration
from modeldeploy.controller.reconciler import OperatorConfig
from modeldeploy.registry.client import CREDENTIAL_KEYS, configure_http
from modeldeploy.registry.subscription import DEFAULT_WEBHOOK_NAME

DEFAULT_SERVING_IMAGE = "ghcr.io/modeldeploy/modeldeploy-serving:0.1.0"


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="modeldeploy operator", description="Run the ModelDeployment operator."
    )
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    p.add_argument("--metrics-port", type=int, default=int(env("MODELDEPLOY_METRICS_PORT", "9100")))
    p.add_argument(
        "--webhook-port",
        type=int,
        default=int(env("MODELDEPLOY_WEBHOOK_PORT", "8081")),
        help="HTTP port for MLflow registry webhooks (/webhooks/mlflow)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        default=int(env("MODELDEPLOY_HEALTH_PORT", "8080")),
        help="liveness endpoint (/healthz)",
    )
    p.add_argument(
        "--bind-address",
        default=env("MODELDEPLOY_BIND_ADDRESS", "127.0.0.1"),
        help="address the metrics, webhook and health endpoints listen on (default 127.0.0.1; "
        "in a pod, 0.0.0.0 as the chart and manifests set it)",
    )
    p.add_argument("--workers", type=int, default=4, help="reconciles running at once")
    p.add_argument(
        "--poll-interval",
        type=_duration,
        default=env("MODELDEPLOY_POLL_INTERVAL", "30s"),
        help="how often to re-ask the registry, unless a ModelDeployment sets "
        "spec.registry.pollInterval (Go duration; default 30s)",
    )
    p.add_argument(
        "--serving-image", default=env("MODELDEPLOY_SERVING_IMAGE", DEFAULT_SERVING_IMAGE)
    )
    p.add_argument(
        "--registry-webhook-url",
        default=env("MODELDEPLOY_REGISTRY_WEBHOOK_URL"),
        help="URL MLflow should call on alias/version events; registered at start",
    )
    p.add_argument(
        "--trust-model-code",
        default=env("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),
        choices=["never", "registry", "always"],
        help="which models serving pods may run code from (pickles, custom pyfunc); 'registry': "
        "versions from the registry the ModelDeployment names (docs/serving.md)",
    )
    p.add_argument(
        "--alerts-url",
        default=env("MODELDEPLOY_ALERTS_URL"),
        help="Alertmanager or Prometheus base URL to poll for firing alerts "
        "(besides the /alerts/alertmanager webhook)",
    )
    p.add_argument(
        "--alerts-poll-interval",
        type=_duration,
        default=env("MODELDEPLOY_ALERTS_POLL_INTERVAL", "5s"),
    )
    p.add_argument(
        "--alertmanager-url",
        default=env("MODELDEPLOY_ALERTMANAGER_URL"),
        help="Alertmanager base URL read when this replica starts leading, to re-learn alerts "
        "its webhook pushed to another replica (default: --alerts-url)",
    )
    p.add_argument(
        "--prometheus-url",
        default=env("MODELDEPLOY_PROMETHEUS_URL"),
        help="Prometheus base URL whose serving metrics judge canary steps and blue-green "
        "previews (spec.strategy); without it those steps hold and say so",
    )
    p.add_argument(
        "--registry-webhook-name",
        default=env("MODELDEPLOY_REGISTRY_WEBHOOK_NAME", DEFAULT_WEBHOOK_NAME),
        help="name of the webhook registered in MLflow: one per operator installation",
    )
    ha = p.add_argument_group("high availability (docs/operator.md)")
    ha.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=env("MODELDEPLOY_LEADER_ELECTION", "true").lower() not in ("0", "false", "no"),
        help="reconcile only while holding a coordination.k8s.io Lease (default: on)",
    )
    ha.add_argument(
        "--leader-election-namespace",
        default=env("POD_NAMESPACE"),
        help="namespace of the Lease (default: $POD_NAMESPACE, else the first --namespace, "
        "else default)",
    )
    ha.add_argument(
        "--leader-election-name",
        default=env("MODELDEPLOY_LEADER_ELECTION_NAME", "modeldeploy-operator"),
        help="name of the Lease: the replicas of one installation share it",
    )
    ha.add_argument("--lease-duration", type=_duration, default="15s")
    ha.add_argument("--renew-deadline", type=_duration, default="10s")
    ha.add_argument("--retry-period", type=_duration, default="2s")
    ha.add_argument(
        "--advertise-url",
        default=env("MODELDEPLOY_ADVERTISE_URL"),
        help="URL at which the other replicas reach this one's webhook port (default: "
        "http://$POD_IP:<webhook-port>, else the bind address)",
    )
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


def advertise_url(args: argparse.Namespace) -> str:
    if args.advertise_url:
        return str(args.advertise_url)
    host = os.environ.get("POD_IP") or args.bind_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{_host(host)}:{args.webhook_port}"


def identity() -> str:
    """POD_NAME in a pod (a restarted container keeps its Lease); host and pid elsewhere."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def config_from(args: argparse.Namespace) -> OperatorConfig:
    creds = {k: os.environ[k] for k in CREDENTIAL_KEYS if os.environ.get(k)}
    lease_namespace = args.leader_election_namespace or (
        args.namespace[0] if args.namespace else "default"
    )
    return OperatorConfig(
        default_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
        default_credentials=creds,
        serving_image=args.serving_image,
        namespaces=tuple(args.namespace),
        workers=max(1, args.workers),
        poll_interval=args.poll_interval,
        metrics_port=args.metrics_port,
        webhook_port=args.webhook_port,
        health_port=args.health_port,
        bind_address=args.bind_address,
        registry_webhook_url=args.registry_webhook_url,
        registry_webhook_secret=os.environ.get("MODELDEPLOY_REGISTRY_WEBHOOK_SECRET") or None,
        serving_env=(("MODELDEPLOY_TRUST_MODEL_CODE", args.trust_model_code),),
        alert_webhook_token=os.environ.get("MODELDEPLOY_ALERT_WEBHOOK_TOKEN") or None,
        alerts_url=args.alerts_url,
        alerts_poll_interval=args.alerts_poll_interval,
        alertmanager_url=args.alertmanager_url,
        prometheus_url=args.prometheus_url,
        registry_webhook_name=args.registry_webhook_name,
        leader_election=args.leader_election,
        identity=identity(),
        advertise_url=advertise_url(args),
        lease_namespace=lease_namespace,
        lease_name=args.leader_election_name,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def client_configuration(workers: int) -> Any:
    """The loaded kubeconfig's client configuration, with a connection pool for every worker
    and the operator's other threads (Events, leader election, alert re-learning). The client's
    default, five per core, is 10 here: with more workers than that, each request beyond it
    opened a TLS connection of its own and threw it away (urllib3 "Connection pool is full")."""
    from kubernetes import client

    conf = client.Configuration.get_default_copy()
    conf.connection_pool_maxsize = max(conf.connection_pool_maxsize or 0, workers + 4)
    return conf


def main(argv: list[str]) -> int:
    import kopf
    from kubernetes import config as kube_config
    from prometheus_client import disable_created_metrics

    from modeldeploy.controller import handlers  # noqa: F401  (registers the handlers)
    from modeldeploy.controller.kube import CountingApiClient, Kube
    from modeldeploy.controller.leader import Timing
    from modeldeploy.controller.metrics import OperatorMetrics
    from modeldeploy.controller.operator import Operator

    args = parse_args(argv)
    fmt = kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=args.verbose, log_format=fmt)
    logging.getLogger("modeldeploy").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    for noisy in ("kopf.objects", "urllib3", "kopf._core.reactor.running", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    configure_http()
    # *_created series doubled every counter's lines for nothing (a /metrics of 1.1 MB at 1000
    # ModelDeployments; issue 14). The serving runtime drops them too.
    disable_created_metrics()
    cfg = config_from(args)
    try:
        Timing(cfg.lease_duration, cfg.renew_deadline, cfg.retry_period)
    except ValueError as exc:
        raise SystemExit(f"modeldeploy operator: {exc}") from None
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    metrics = OperatorMetrics()
    api = CountingApiClient(metrics.kube_request, client_configuration(cfg.workers))
    operator = Operator(Kube(api, instance=cfg.identity), cfg, metrics)
    logging.getLogger("modeldeploy").info(
        "modeldeploy operator %s: namespaces=%s registry=%s metrics=%s:%d webhooks=:%d lease=%s",
        cfg.identity,
        ",".join(cfg.namespaces) or "all",
        cfg.default_tracking_uri or "-",
        cfg.bind_address,
        cfg.metrics_port,
        cfg.webhook_port,
        f"{cfg.lease_namespace}/{cfg.lease_name}" if cfg.leader_election else "off",
    )
    kopf.run(
        standalone=True,
        clusterwide=not cfg.namespaces,
        namespaces=cfg.namespaces,
        liveness_endpoint=f"http://{_host(cfg.bind_address)}:{cfg.health_port}/healthz",
        memo=kopf.Memo(operator=operator),
    )
    return 0


__all__ = ["config_from", "main", "parse_args"]
