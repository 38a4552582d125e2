"""`modeldeploy approve | revoke | promote | policy | lineage`: argument parsing, the real
clients, output and exit codes. The operations are in actions.py and lineage.py.

Output rule (one for every command): data goes to stdout, as text or, with `--output json`, as
one JSON document. An error is one line on stderr, always; with `--output json` stdout also gets
`{"error": "...", "code": N}`, so a script reading stdout never sees an empty document. Warnings
(lineage only) go to stderr and, in JSON, into the document's `warnings`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from modeldeploy import names
from modeldeploy.governance import actions, lineage, lineage_text, records
from modeldeploy.governance.actions import (
    GovernanceError,
    MlflowRegistry,
    NotFound,
    Unreachable,
    UsageError,
    Who,
)
from modeldeploy.registry.client import CREDENTIAL_KEYS
from modeldeploy.registry.types import redact, same_server

HTTP_TIMEOUT_SECONDS = 10

EXIT_CODES = """exit codes:
  0  done (or nothing to do: the version already holds the stage)
  1  refused by policy: the stage needs an approval the version lacks, or the model's
     policy tag cannot be read
  2  usage error: bad flags or values, no registry given
  3  not found: model, version, alias, stage, approval to revoke, ModelDeployment
  4  unreachable: the registry or the cluster did not answer, or refused the request
  5  an unexpected error (a bug of modeldeploy's: please report it)

Nothing is written unless every check passed. Errors are one line on stderr; with
--output json also {"error": "...", "code": N} on stdout. See docs/governance.md."""

ClientFactory = Callable[[str], Any]  # tracking URI → an mlflow.MlflowClient (or a fake)
ClusterFactory = Callable[[], lineage.Cluster]


class _ArgumentError(Exception):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors follow the output rule too."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(message, self.format_usage())


def main(
    argv: list[str],
    client_factory: ClientFactory | None = None,
    cluster_factory: ClusterFactory | None = None,
) -> int:
    """Runs one governance command (`argv[0]` is its name); returns the exit code."""
    json_out = _wants_json(argv)
    command = argv[0] if argv else "governance"
    try:
        args = build_parser().parse_args(argv)
    except _ArgumentError as exc:
        sys.stderr.write(exc.usage)
        return _fail(command, UsageError(str(exc)), json_out)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else actions.EXIT_OK
    json_out = args.output == "json"
    try:
        data, text = _dispatch(
            args, client_factory or _mlflow_client, cluster_factory or KubeCluster
        )
    except GovernanceError as exc:
        return _fail(command, exc, json_out)
    except Exception as exc:  # a bug: still one line and a code of its own, not a traceback
        internal = GovernanceError(f"unexpected {type(exc).__name__}: {exc} (a bug: report it)")
        internal.exit_code = actions.EXIT_INTERNAL
        return _fail(command, internal, json_out)
    print(json.dumps(_finite(data), indent=2, ensure_ascii=False) if json_out else text)
    return actions.EXIT_OK


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (Python would print them anyway, and parsers refuse them):
    a non-finite number, e.g. a metric logged as NaN, is written as the string "nan"/"inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--tracking-uri", help="the MLflow registry (default: env MLFLOW_TRACKING_URI)"
    )
    common.add_argument("--output", "-o", choices=("text", "json"), default="text")
    who = _Parser(add_help=False)
    who.add_argument(
        "--by",
        help="who acts (default: env MODELDEPLOY_USER, MLFLOW_TRACKING_USERNAME, the login name)",
    )
    parser = _Parser(prog="modeldeploy", description="approvals, promotion and lineage")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_: str, *extra: _Parser) -> Any:
        parents: list[_Parser] = [common, *extra]
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            parents=parents,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    for name, verb in (("approve", "approve"), ("revoke", "withdraw the approval of")):
        p = command(name, f"{verb} a model version for a stage", who)
        p.add_argument("model")
        p.add_argument("version")
        p.add_argument("--stage", required=True, help="a stage of the model's policy")
        p.add_argument("--note", default="", help="why (kept in the record)")
    p = command("promote", "point a stage's alias at a version", who)
    p.add_argument("model")
    origin = p.add_mutually_exclusive_group(required=True)
    origin.add_argument("--from", dest="source", help="promote the version this stage names")
    origin.add_argument("--version", help="promote this version")
    p.add_argument("--to", required=True, help="the stage whose alias moves")
    p = command("policy", "show the model's stage policy, or set it with the flags")
    p.add_argument("model")
    p.add_argument("--stages", help="comma-separated stage names, in order (aliases)")
    p.add_argument(
        "--require-approval", help="comma-separated stages that need an approval ('' for none)"
    )
    p = command("lineage", "data, preprocessing, training run, model version and serving")
    p.add_argument("target", help="NAMESPACE/NAME of a ModelDeployment, or MODEL with VERSION")
    p.add_argument("version", nargs="?", help="the model version (with MODEL)")
    p.add_argument("--namespace", help="look for ModelDeployments only here (default: all)")
    return parser


def _dispatch(
    args: argparse.Namespace, client_factory: ClientFactory, cluster_factory: ClusterFactory
) -> tuple[Any, str]:
    """(JSON data, text) of the command."""
    if args.command == "lineage":
        return _lineage(args, client_factory, cluster_factory)
    reg = _registry(args.tracking_uri, client_factory)
    if args.command == "policy":
        stages, required = _names(args.stages), _names(args.require_approval)
        if stages is None and required is None:
            shown = actions.show_policy(reg, args.model)
        else:
            shown = actions.set_policy(reg, args.model, stages, required)
        return shown.to_dict(), _policy_text(shown)
    who = _who(args.by)
    if args.command == "approve":
        done = actions.approve(reg, args.model, args.version, args.stage, args.note, who)
    elif args.command == "revoke":
        done = actions.revoke(reg, args.model, args.version, args.stage, args.note, who)
    else:
        done = actions.promote(
            reg, args.model, args.to, who, source=args.source, version=args.version
        )
    return done.to_dict(), done.message


def _lineage(
    args: argparse.Namespace, client_factory: ClientFactory, cluster_factory: ClusterFactory
) -> tuple[Any, str]:
    cluster = cluster_factory()
    first = None
    if args.version is None:
        namespace, sep, name = str(args.target).partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise UsageError(f"{args.target!r}: give NAMESPACE/NAME, or MODEL VERSION")
        first = lineage.deployment_target(cluster, namespace, name)
        model, version = first.model, first.version
        if not args.tracking_uri and first.tracking_uri:
            _credentials_only_for_the_default(first.tracking_uri)
        reg = _registry(args.tracking_uri or first.tracking_uri, client_factory)
    else:
        model, version = args.target, args.version
        reg = _registry(args.tracking_uri, client_factory)
    found = lineage.gather(reg, cluster, model, version, namespace=args.namespace, first=first)
    for warning in found.warnings:
        print(f"modeldeploy lineage: warning: {warning}", file=sys.stderr)
    return found.to_dict(), lineage_text.render_text(found)


def _credentials_only_for_the_default(uri: str) -> None:
    """A ModelDeployment names its registry; whoever wrote it must not collect the credentials
    of whoever runs lineage on it. MLflow sends the environment's credentials to any server, so
    they are dropped (this process only) unless `uri` is the user's own MLFLOW_TRACKING_URI; the
    operator applies the same rule (docs/security.md). `--tracking-uri` says "trust this one"."""
    default = os.environ.get("MLFLOW_TRACKING_URI", "")
    if default and same_server(uri, default):
        return
    dropped = [k for k in CREDENTIAL_KEYS if os.environ.pop(k, None) is not None]
    if dropped:
        print(
            f"modeldeploy lineage: warning: not sending {', '.join(dropped)} to {redact(uri)}, "
            "the registry the ModelDeployment names (give --tracking-uri to trust it)",
            file=sys.stderr,
        )


def _policy_text(shown: actions.PolicyOutcome) -> str:
    p = shown.policy
    where = "set on the model" if p.explicit else "the defaults: the model has no policy tag"
    required = ", ".join(p.require_approval) or "none"
    lines = [
        f"{shown.model}: stages {' → '.join(p.stages)} ({where})",
        f"approval required for: {required}",
    ]
    return "\n".join([shown.message, *lines] if shown.message else lines)


# --- the real clients ---------------------------------------------------------------------


def _registry(uri: str | None, factory: ClientFactory) -> MlflowRegistry:
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UsageError("no registry: give --tracking-uri or set MLFLOW_TRACKING_URI")
    # Fail fast on a dead registry instead of MLflow's minutes of retries.
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT_SECONDS)),
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
        ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ):
        os.environ.setdefault(key, value)
    try:
        return MlflowRegistry(factory(uri), redact(uri))
    except GovernanceError:
        raise
    except Exception as exc:
        raise UsageError(f"registry {redact(uri)!r}: {type(exc).__name__}: {exc}") from None


def _mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class KubeCluster:
    """The cluster reads over the official client: KUBECONFIG (or ~/.kube/config), else the
    in-cluster service account. Configured on first use, so a lineage that needs no cluster
    never fails on one; no retries and a 10 s timeout, so an unreachable API server fails fast
    (exit code 4, or a warning when only the model's lineage was asked)."""

    def __init__(self, timeout: float = HTTP_TIMEOUT_SECONDS) -> None:
        self._timeout = timeout
        self._api: Any = None

    def get(self, namespace: str, name: str) -> Mapping[str, Any]:
        def call(k: Any) -> Any:
            return k.CustomObjectsApi(self._client()).get_namespaced_custom_object(
                *_CRD[:2], namespace, _CRD[2], name, _request_timeout=self._timeout
            )

        return dict(self._call(call, f"ModelDeployment {namespace}/{name}"))

    def find(self, namespace: str | None) -> list[Mapping[str, Any]]:
        def call(k: Any) -> Any:
            api = k.CustomObjectsApi(self._client())
            if namespace is None:
                return api.list_cluster_custom_object(*_CRD, _request_timeout=self._timeout)
            return api.list_namespaced_custom_object(
                *_CRD[:2], namespace, _CRD[2], _request_timeout=self._timeout
            )

        where = f"namespace {namespace}" if namespace else "all namespaces"
        found = self._call(call, f"ModelDeployments in {where}")
        return [dict(o) for o in found.get("items") or ()]

    def events(self, namespace: str, name: str) -> list[lineage.Event]:
        selector = f"involvedObject.kind={names.KIND},involvedObject.name={name}"

        def call(k: Any) -> Any:
            return k.CoreV1Api(self._client()).list_namespaced_event(
                namespace, field_selector=selector, _request_timeout=self._timeout
            )

        found = self._call(call, f"Events of {namespace}/{name}")
        return sorted((_event(e) for e in found.items or ()), key=lambda e: e.time)

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            cfg = client.Configuration()
            try:
                config.load_kube_config(client_configuration=cfg)
            except Exception as kube_exc:
                try:
                    config.load_incluster_config(client_configuration=cfg)
                except Exception:
                    raise Unreachable(
                        f"no cluster configured (KUBECONFIG, ~/.kube/config, in-cluster): "
                        f"{kube_exc}"
                    ) from None
            cfg.retries = 0
            self._api = client.ApiClient(cfg)
        return self._api

    def _call(self, fn: Callable[[Any], Any], what: str) -> Any:
        from kubernetes import client

        try:
            return fn(client)
        except GovernanceError:
            raise
        except client.exceptions.ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{what} not found") from None
            raise Unreachable(f"cluster: {what}: {exc.status} {exc.reason}") from None
        except Exception as exc:
            raise Unreachable(f"cluster: {what}: {type(exc).__name__}: {exc}") from None


_CRD = (names.GROUP, names.VERSION, names.PLURAL)


def _event(e: Any) -> lineage.Event:
    when = e.last_timestamp or e.event_time or e.first_timestamp
    return lineage.Event(
        time=records.timestamp(when) if when else "",
        type=str(e.type or ""),
        reason=str(e.reason or ""),
        message=str(e.message or ""),
        count=int(e.count or 1),
    )


# --- helpers ------------------------------------------------------------------------------


def _who(by: str | None) -> Who:
    name = (
        by
        or os.environ.get("MODELDEPLOY_USER")
        or os.environ.get("MLFLOW_TRACKING_USERNAME")
        or _login()
    )
    if not name.strip():
        raise UsageError("--by must name someone")
    actions.check_printable("--by", name)
    return Who(name.strip(), datetime.now(UTC), secrets.token_hex(2))


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _names(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def _wants_json(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg in {"--output=json", "-ojson"}:
            return True
        if arg in {"--output", "-o"} and argv[i + 1 : i + 2] == ["json"]:
            return True
    return False


def _fail(command: str, exc: GovernanceError, json_out: bool) -> int:
    message = " ".join(str(exc).split())  # one line, whatever the cause said
    print(f"modeldeploy {command}: error: {message}", file=sys.stderr)
    if json_out:
        print(json.dumps({"error": message, "code": exc.exit_code}))
    return exc.exit_code
