"""`make demo`: the whole path on the local stack, narrated.

1. installs the ModelDeployment CRD (and the Prometheus Operator's ServiceMonitor/PrometheusRule
   CRDs, from its Go module) into the local cluster;
2. trains two versions of a small classifier (scikit-learn's bundled wine data) with
   examples/train.py, recording dataset versions and preprocessing, and registers them in MLflow
   as `fraud-detector`, with @champion on version 1;
3. starts the operator (logs in .stack/logs/operator.log), registering its webhook with MLflow;
4. applies manifests/examples/champion.yaml and shows the rollout as `kubectl get md -w` would;
5. moves @champion to version 2 in MLflow and shows the new version rolling out, with no change
   to the ModelDeployment;
6. sends labelled predictions and a drifted batch to real serving processes (dev/podrunner.py)
   and prints the accuracy and input drift Prometheus records from their counters;
   then promotes a bad version 3 (it fails 60 % of its predictions) while they take traffic;
   Prometheus' alert fires, Alertmanager tells the operator, and the operator rolls back to
   version 2 by itself;
7. shows every trace of the rollback;
8. promotes version 2 through the stages with the `modeldeploy` CLI: the promotion to production
   is refused without an approval; an alias moved around the CLI does not get past the operator
   either (a ModelDeployment with `requireApproval: production` waits, phase AwaitingApproval);
   `modeldeploy approve` rolls it out within seconds;
9. prints the lineage of what serves: dataset → preprocessing → run → version → deployments;
10. starts a second operator replica (a standby), kills the leader with SIGKILL, moves
   @champion to version 1 while nobody leads, and shows the standby taking the Lease and rolling
   version 1 out; the killed replica comes back as the new standby, and moving @champion back to
   2 reaches the new leader through it (MLflow's webhook → standby → leader; dev/demo_ha.py);
   then says where to look and how to stop;
11. draws every dashboard panel over the demo's time span from Prometheus (no Grafana needed)
   and prints where the pictures are.

The two operator replicas keep running after the demo (`make stack-down` stops them with the
rest).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import demo_ha
import stack as devstack

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "modeldeploy-demo"
MODEL = "fraud-detector"
MD = "fraud-detector"


def say(msg: str) -> None:
    print(f"\n\033[1m==> {msg}\033[0m", flush=True)


def kubectl(env: dict[str, str], *args: str, input: str | None = None) -> str:
    res = subprocess.run(["kubectl", *args], env=env, input=input, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{res.stderr}")
    return res.stdout


def train_and_register(env: dict[str, str]) -> None:
    """Two versions trained by examples/train.py, run as a data scientist runs it: each run
    records its dataset versions, preprocessing, metrics and drift baseline."""
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    if client.search_model_versions(f"name = '{MODEL}'"):
        print(f"   {MODEL} is already registered; reusing its versions")
        return
    for c in ("0.01", "1.0"):
        cmd = [sys.executable, str(REPO / "examples/train.py"), "--model", MODEL]
        cmd += ["--experiment", "modeldeploy-demo", "--regularization", c]
        print(f"   $ python examples/train.py --model {MODEL} --regularization {c}", flush=True)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"examples/train.py failed:\n{res.stderr[-3000:]}")
        version = res.stdout.strip().splitlines()[-1]
        metrics = client.get_run(client.get_model_version(MODEL, version).run_id).data.metrics
        print(
            f"   registered {MODEL} version {version} (C={c}, accuracy {metrics['accuracy']:.3f})"
        )


def start_operator(stack: devstack.Stack, env: dict[str, str], record: str = "operator") -> None:
    """Starts an operator replica recorded as `record` in the stack's state (`make stack-down`
    stops it). "operator" listens on the stack's operator ports, where Alertmanager sends its
    notifications; another record keeps the ports it was first given."""
    state = stack.state()
    old = state.get(record)
    if old and devstack.pid_alive(int(old["pid"])):
        print(f"   {record} already running (pid {old['pid']})")
        return
    if record == "operator":
        ports = stack.operator_ports()
    elif old:
        ports = {"metrics": int(old["port"]), "webhook": int(old["webhook"])}
    else:
        ports = {"metrics": devstack.free_port(), "webhook": devstack.free_port()}
    secret_file = stack.root / "registry-webhook.secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(24))
        secret_file.chmod(0o600)
    op_env = dict(env, MODELDEPLOY_REGISTRY_WEBHOOK_SECRET=secret_file.read_text())
    cmd = [
        str(Path(sys.executable).parent / "modeldeploy"),
        "operator",
        # Only the demo's namespace: the operator keeps running after the demo, and must not
        # reconcile what tests (`make test` on the same stack) create in theirs.
        "--namespace",
        NAMESPACE,
        "--metrics-port",
        str(ports["metrics"]),
        "--webhook-port",
        str(ports["webhook"]),
        "--health-port",
        str(devstack.free_port()),
        # Every replica registers the same URL (one webhook per installation; only the leader
        # writes it); behind a Service it would reach any replica, and a standby forwards.
        "--registry-webhook-url",
        f"http://127.0.0.1:{stack.operator_ports()['webhook']}/webhooks/mlflow",
    ]
    proc = devstack.spawn(cmd, stack.logs / f"{record}.log", op_env)
    stack.record_operator(proc.pid, ports["metrics"], name=record, webhook_port=ports["webhook"])
    # Prometheus scrapes the operator as a ServiceMonitor would (the Rollouts dashboard).
    stack.add_scrape_target(f"modeldeploy-{record}", f"127.0.0.1:{ports['metrics']}")
    print(
        f"   {record} pid {proc.pid}, metrics on :{ports['metrics']}, "
        f"webhooks on :{ports['webhook']}, logs in {stack.logs / f'{record}.log'}"
    )


def bad_version(tracking_uri: str) -> str:
    """Version 3 of the demo model: fails 60 % of its predictions (registered once)."""
    import cloudpickle
    import flaky_model
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    for mv in client.search_model_versions(f"name = '{MODEL}'"):
        if mv.tags.get("demo") == "bad":
            return str(mv.version)
    cloudpickle.register_pickle_by_value(flaky_model)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_name="demo-bad"):
        info = mlflow.pyfunc.log_model(name="model", python_model=flaky_model.Flaky(0.6))
    mv = client.create_model_version(
        MODEL, info.model_uri, model_id=info.model_id, tags={"demo": "bad"}
    )
    return str(mv.version)


class Traffic:
    """Wine rows against every live serving process of one ModelDeployment (as its Service would
    spread them), `rate` requests a second whatever the number of pods, counted by version and
    status."""

    def __init__(self, pods: Any, md: str = MD, rate: float = 20.0) -> None:
        import threading
        from collections import Counter

        from sklearn.datasets import load_wine

        x = load_wine(as_frame=True).data
        # Every training row in turn: the inputs look like training data (no drift alert).
        self.payloads = [
            {"dataframe_split": {"columns": list(x.columns), "data": [row]}}
            for row in x.values.tolist()
        ]
        self.pods, self.md, self.rate = pods, md, rate
        self.codes = Counter[tuple[str, int]]()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        import requests

        s = requests.Session()
        sent = 0
        while not self.stop.is_set():
            endpoints = self.pods.endpoints(self.md)
            if endpoints:
                ep = endpoints[sent % len(endpoints)]
                sent += 1
                payload = self.payloads[sent % len(self.payloads)]
                with contextlib.suppress(requests.RequestException):
                    r = s.post(f"{ep.url}/invocations", json=payload, timeout=2)
                    self.codes[(ep.version, r.status_code)] += 1
            self.stop.wait(1 / self.rate)

    def summary(self) -> str:
        return ", ".join(f"v{v} {code}: {n}" for (v, code), n in sorted(self.codes.items()))

    def failed(self) -> tuple[int, int]:
        """(5xx answers, all answers) so far."""
        return (
            sum(n for (_, code), n in self.codes.items() if code >= 500),
            sum(self.codes.values()),
        )


CANARY_MD = "fraud-detector-canary"


def canary_scene_start(env: dict[str, str]) -> None:
    """A second ModelDeployment of the same model and alias, delivered by canary: the steps of
    manifests/examples/canary.yaml at demo speed (seconds, not minutes)."""
    manifest = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": CANARY_MD},
        "spec": {
            "model": {"name": MODEL, "alias": "champion"},
            "serving": {"replicas": 4},
            "strategy": {
                "type": "Canary",
                "canary": {
                    "steps": [{"weight": 20, "duration": "20s"}, {"weight": 50, "duration": "20s"}]
                },
                "analysis": {"interval": "5s", "minRequests": 20},
            },
        },
    }
    kubectl(env, "apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(manifest))
    watch(env, lambda st: st.get("phase") == "Healthy", md=CANARY_MD)
    print(f"   {CANARY_MD}: version 2 on 4 replicas, strategy Canary (20% then 50%)")


def md_status(env: dict[str, str], md: str) -> dict[str, Any]:
    out = kubectl(env, "get", "md", md, "-n", NAMESPACE, "-o", "json")
    return dict(json.loads(out).get("status") or {})


def watch_both(
    env: dict[str, str], traffic: dict[str, Traffic], timeout: float = 240
) -> tuple[dict[str, Any], dict[str, float]]:
    """Until both ModelDeployments rolled back: the first's status, and when each did."""
    t0 = time.monotonic()
    took: dict[str, float] = {}
    last = 0.0
    st: dict[str, Any] = {}
    while len(took) < len(traffic):
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"no rollback within {timeout:.0f}s: {took}")
        for md in traffic:
            s = md_status(env, md)
            if md == MD:
                st = s
            if md not in took and s.get("phase") == "RolledBack":
                took[md] = time.monotonic() - t0
                print(f"   {md}: RolledBack after {took[md]:.0f} s")
        if time.monotonic() - last > 5:
            for md, tr in traffic.items():
                canary = md_status(env, md).get("canary") or {}
                step = f" [canary v{canary['version']} {canary.get('stepText')}]" if canary else ""
                print(f"   {md}: {tr.summary()}{step}")
            last = time.monotonic()
        time.sleep(1)
    return st, took


def model_quality(pods: Any, prometheus: str) -> None:
    """Labelled predictions on both pods and a drifted batch; then what Prometheus recorded from
    the pods' counters (the operator's recording rules, docs/alerting.md)."""
    import requests
    from sklearn.datasets import load_wine

    from modeldeploy import names

    wine = load_wine(as_frame=True)
    eps, s = pods.endpoints(MD), requests.Session()
    sel = f'namespace="{NAMESPACE}", modeldeployment="{MD}", model_version="2"'

    def result(promql: str) -> list[Any]:
        res = s.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
        return list(res.get("data", {}).get("result") or [])

    # increase() counts from a pod's first sample: rows sent before Prometheus first scraped
    # the pod would not count. The ServiceMonitor scrapes every 15 s.
    deadline = time.monotonic() + 40
    while len(result(f"{names.FEEDBACK_ROWS}{{{sel}}}")) < len(eps):
        if time.monotonic() > deadline:
            print("   (Prometheus has not scraped every pod yet: the first rows may not count)")
            break
        time.sleep(1)
    rows = wine.data.sample(150, random_state=1)
    for i, idx in enumerate(rows.index):
        ep = eps[i % len(eps)]
        one = {"dataframe_split": rows.loc[[idx]].to_dict(orient="split")}
        r = s.post(f"{ep.url}/invocations", json=one, timeout=5)
        if r.status_code == 200:
            label = {"request_id": r.headers["X-Request-ID"], "label": int(wine.target[idx])}
            s.post(f"{ep.url}/feedback", json=label, timeout=5)
    pods_text = f"{len(eps)} pod{'s' if len(eps) > 1 else ''}"
    print(f"   150 predictions on {pods_text}, each followed by its true label (/feedback)")
    drifted = wine.data.sample(100, random_state=2)
    drifted["alcohol"] = drifted["alcohol"] + 3.0
    for first in range(0, 100, 20):
        batch = {"dataframe_split": drifted.iloc[first : first + 20].to_dict(orient="split")}
        s.post(f"{eps[0].url}/invocations", json=batch, timeout=5)
    print("   100 rows with alcohol 3 points higher than in training (a drifted batch)")

    def value(promql: str) -> float | None:
        found = result(promql)
        return float(found[0]["value"][1]) if found else None

    deadline = time.monotonic() + 30
    acc = psi = None
    while time.monotonic() < deadline and (acc is None or psi is None or psi < 0.2):
        time.sleep(2)
        acc = value(f"{names.REC_ACCURACY}{{{sel}}}")
        psi = value(f'{names.REC_FEATURE_PSI}{{{sel}, {names.LABEL_FEATURE}="alcohol"}}')
    print(
        f"   recorded over the version's pods: accuracy {acc if acc is None else round(acc, 3)}, "
        f"PSI of alcohol {psi if psi is None else round(psi, 2)} (ModelInputDrift above 0.2)"
    )


def history(env: dict[str, str]) -> str:
    jsonpath = (
        "{range .status.history[*]}   v{.version}: {.outcome} ({.startedAt} → {.finishedAt}) "
        '{.reason}{"\\n"}{end}'
    )
    return kubectl(env, "get", "md", MD, "-n", NAMESPACE, "-o", f"jsonpath={jsonpath}")


def watch(env: dict[str, str], until: Any, timeout: float = 120, md: str = MD) -> dict[str, Any]:
    """Prints a line each time the printed columns change, like `kubectl get md -w`."""
    import json

    last, deadline = None, time.monotonic() + timeout
    w = max(21, len(md) + 2)
    print(f"   {'NAME':{w}}{'MODEL':16}{'SELECTOR':13}{'SERVING':9}{'PHASE':18}READY")
    while time.monotonic() < deadline:
        obj = json.loads(kubectl(env, "get", "md", md, "-n", NAMESPACE, "-o", "json"))
        st = obj.get("status") or {}
        ready = next((c["status"] for c in st.get("conditions", []) if c["type"] == "Ready"), "")
        row = (
            md,
            MODEL,
            st.get("selector", ""),
            st.get("servingVersion", ""),
            st.get("phase", ""),
            ready,
        )
        if row != last:
            print(f"   {row[0]:{w}}{row[1]:16}{row[2]:13}{row[3]:9}{row[4]:18}{row[5]}", flush=True)
            last = row
        if until(st):
            return st
        time.sleep(0.5)
    raise SystemExit(f"timed out; see {REPO / '.stack/logs'}/operator*.log")


def modeldeploy(env: dict[str, str], *args: str, expect: int = 0) -> str:
    """Runs the `modeldeploy` CLI as a user would, showing the command and what it said."""
    print(f"   $ modeldeploy {' '.join(args)}", flush=True)
    res = subprocess.run(
        [str(Path(sys.executable).parent / "modeldeploy"), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    for line in (res.stdout + res.stderr).rstrip().splitlines():
        print(f"     {line}")
    if res.returncode != expect:
        raise SystemExit(f"modeldeploy {args[0]} exited {res.returncode}, expected {expect}")
    if expect:
        print(f"     (exit code {res.returncode})")
    return res.stdout


PROD_MD = "fraud-detector-prod"
PROD_YAML = f"""apiVersion: modeldeploy.io/v1alpha1
kind: ModelDeployment
metadata:
  name: {PROD_MD}
spec:
  model:
    name: {MODEL}
    alias: production
    requireApproval: production
"""


def approval_gate(env: dict[str, str], client: Any, version: str) -> None:
    """Promotion through the stages: the CLI refuses an unapproved promotion, the operator
    refuses to roll out a version whose alias was moved around the CLI, and an approval opens
    both gates."""
    from mlflow.exceptions import MlflowException

    # A second `make demo` starts this story from the beginning.
    with contextlib.suppress(MlflowException):
        client.delete_registered_model_alias(MODEL, "production")
    if client.get_model_version(MODEL, version).tags.get("modeldeploy.io/approved.production"):
        cli = str(Path(sys.executable).parent / "modeldeploy")
        reset = ["--stage", "production", "--note", "demo reset"]
        subprocess.run([cli, "revoke", MODEL, version, *reset], env=env, capture_output=True)
    kubectl(env, "delete", "md", PROD_MD, "-n", NAMESPACE, "--ignore-not-found")
    # Its Deployment goes by garbage collection, a moment later: a new ModelDeployment of the same
    # name would otherwise find version 2 serving and keep it (a served version is not gated).
    deadline = time.monotonic() + 60
    while kubectl(env, "get", "deploy", PROD_MD, "-n", NAMESPACE, "--ignore-not-found").strip():
        if time.monotonic() > deadline:
            raise SystemExit(f"Deployment {PROD_MD} of the previous demo run was not removed")
        time.sleep(0.5)

    modeldeploy(env, "policy", MODEL)
    modeldeploy(env, "promote", MODEL, "--version", version, "--to", "staging")
    modeldeploy(env, "promote", MODEL, "--from", "staging", "--to", "production", expect=1)

    print(
        f"\n   Someone moves @production to version {version} by hand (MLflow UI), around the CLI;"
    )
    print(f"   {PROD_MD} serves @production and requires the production approval:")
    client.set_registered_model_alias(MODEL, "production", version)
    kubectl(env, "apply", "-n", NAMESPACE, "-f", "-", input=PROD_YAML)
    st = watch(env, lambda st: st.get("phase") == "AwaitingApproval", md=PROD_MD)
    approved = next(c for c in st["conditions"] if c["type"] == "Approved")
    print(f"   status.conditions Approved={approved['status']}: {approved['message']}")
    dep = kubectl(env, "get", "deploy", PROD_MD, "-n", NAMESPACE, "--ignore-not-found")
    print(f"   Deployment {PROD_MD}: {dep.strip() or 'none: nothing is rolled out'}")

    print()
    t0 = time.monotonic()
    modeldeploy(
        env,
        "approve",
        MODEL,
        version,
        "--stage",
        "production",
        "--note",
        "offline evaluation passed",
    )
    watch(env, lambda st: st.get("phase") == "Healthy", md=PROD_MD)
    took = time.monotonic() - t0
    print(f"   version {version} serving {took:.1f}s after the approval (registry webhook)")


def dashboard_pictures(stack: devstack.Stack, env: dict[str, str], started: float) -> None:
    """The dashboards' panels over the demo's time span, drawn from Prometheus without a Grafana
    (dev/dashboard_pictures.py). The demo has succeeded by now: a failure here is a warning."""
    out = stack.root / "dashboards"
    try:
        from dashboard_pictures import render_all

        render_all(env["PROMETHEUS_URL"], out, started, time.time(), {"namespace": NAMESPACE})
    except Exception as exc:
        print(f"   warning: no dashboard pictures ({type(exc).__name__}: {exc})")
        return
    print(f"   Dashboard pictures: {out / 'index.md'}")


def main() -> int:
    started = time.time()
    stack = devstack.Stack()
    env = {**os.environ, **stack.env()}
    env["PATH"] = ":".join(stack.state()["cluster"]["path"]) + ":" + os.environ["PATH"]
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"

    say("Installing the ModelDeployment CRD and the Prometheus Operator's monitoring CRDs")
    kubectl_argv = [str(stack.binary("kubectl")), "--kubeconfig", env["KUBECONFIG"]]
    devstack.apply_crds(kubectl_argv, [REPO / "crds"], ["modeldeployments.modeldeploy.io"])
    devstack.install_monitoring_crds(kubectl_argv)

    say(
        "Training two versions of a classifier and registering them in MLflow "
        f"({env['MLFLOW_TRACKING_URI']})"
    )
    train_and_register(env)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    client.set_registered_model_alias(MODEL, "champion", "1")

    say("Starting the operator")
    start_operator(stack, env)

    say(f"Applying manifests/examples/champion.yaml in namespace {NAMESPACE}")
    kubectl(
        env,
        "apply",
        "-f",
        "-",
        input=kubectl(env, "create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"),
    )
    kubectl(
        env,
        "label",
        "--overwrite",
        "namespace",
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
    )
    kubectl(env, "apply", "-n", NAMESPACE, "-f", str(REPO / "manifests/examples/champion.yaml"))
    watch(env, lambda st: st.get("phase") == "Healthy" and st.get("servingVersion") == "1")

    say("Moving @champion to version 2 in MLflow (the ModelDeployment does not change)")
    t0 = time.monotonic()
    client.set_registered_model_alias(MODEL, "champion", "2")
    watch(env, lambda st: st.get("phase") == "Healthy" and st.get("servingVersion") == "2")
    print(f"   version 2 serving {time.monotonic() - t0:.1f}s after the alias moved")

    say("Rollout history and events")
    print(history(env))
    print(
        kubectl(
            env,
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "involvedObject.kind=ModelDeployment",
            "--sort-by=.lastTimestamp",
        )
    )

    say("Model quality: real serving processes take traffic, Prometheus divides their counts")
    from podrunner import LocalPods

    with LocalPods(NAMESPACE, stack=stack) as pods:
        pods.wait_for_version(MD, "2", timeout=120)
        traffic = Traffic(pods)
        model_quality(pods, env["PROMETHEUS_URL"])
        print(f"   traffic: {traffic.summary()}")

        say("Promoting a bad version while they take traffic: rolling update against canary")
        canary_scene_start(env)
        pods.wait_for_version(CANARY_MD, "2", replicas=4, timeout=180)
        canary_traffic = Traffic(pods, CANARY_MD)
        time.sleep(5)
        bad = bad_version(env["MLFLOW_TRACKING_URI"])
        print(f"   version {bad} fails 60% of its predictions. Both ModelDeployments follow")
        print(f"   @champion at 20 requests/s: {MD} with the rolling update (the default")
        print("   rule alerts on a 5xx share above 5% over 1m held for 30s: about 40 s), and")
        print(f"   {CANARY_MD} with a canary: 20% of its traffic first, judged every 5 s")
        before = {md: tr.failed() for md, tr in ((MD, traffic), (CANARY_MD, canary_traffic))}
        t0 = time.monotonic()
        client.set_registered_model_alias(MODEL, "champion", bad)
        print(f"   @champion → version {bad}")
        st, took = watch_both(env, {MD: traffic, CANARY_MD: canary_traffic})
        pods.wait_for_version(MD, "2", timeout=120)
        pods.wait_for_version(CANARY_MD, "2", replicas=4, timeout=120)
        time.sleep(2)
        traffic.stop.set()
        canary_traffic.stop.set()
        for md, tr in ((MD, traffic), (CANARY_MD, canary_traffic)):
            failed, total = (a - b for a, b in zip(tr.failed(), before[md], strict=True))
            how = "rolling update" if md == MD else "canary at 20%"
            print(
                f"   {how:>15}: rolled back {took[md]:.0f} s after the alias moved; "
                f"{failed} of {total} requests failed ({100 * failed / max(total, 1):.1f}%)"
            )
        canary_st = md_status(env, CANARY_MD)
        cond = next(c for c in canary_st["conditions"] if c["type"] == "RolledBack")
        print(f"   {CANARY_MD}: {cond['reason']}: {cond['message']}")
        kubectl(env, "delete", "md", CANARY_MD, "-n", NAMESPACE, "--wait=false")
        print(f"   t={time.monotonic() - t0:.0f}s")

    say("Where the rollback left its traces")
    cond = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    print(f"   status.conditions RolledBack: {cond['reason']}: {cond['message']}")
    print(f"   status.rejectedVersions: {st.get('rejectedVersions')} (out until @champion moves)")
    print(history(env))
    events = kubectl(env, "get", "events", "-n", NAMESPACE, "--field-selector", "type=Warning")
    print(
        "\n".join(
            "   " + line for line in events.splitlines() if "RolledBack" in line or "TYPE" in line
        )
    )
    import requests

    ports = stack.operator_ports()
    metrics = requests.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5).text
    print(
        "   "
        + "\n   ".join(
            line for line in metrics.splitlines() if line.startswith("modeldeploy_rollbacks_total")
        )
    )
    tag = client.get_model_version(MODEL, bad).tags.get("modeldeploy.io/rejected")
    print(f"   MLflow tag on version {bad}: modeldeploy.io/rejected = {tag}")
    print(
        f"   Prometheus: {env.get('PROMETHEUS_URL')}/alerts   "
        f"Alertmanager: {env.get('ALERTMANAGER_URL')}"
    )

    say("Promotion to production needs an approval")
    approval_gate(env, client, "2")

    say("Lineage: from the dataset to every ModelDeployment that served the version")
    modeldeploy(env, "lineage", f"{NAMESPACE}/{MD}")

    say("High availability: two operator replicas, one leads through a Lease")
    demo_ha.failover(
        stack,
        env,
        kubectl,
        start_operator,
        watch,
        lambda version: client.set_registered_model_alias(MODEL, "champion", version),
        NAMESPACE,
        version="1",
        back="2",
    )

    uri = env["MLFLOW_TRACKING_URI"]
    say("Look around")
    print(f"""   source .stack/env
   kubectl get md,deploy,svc,servicemonitor,prometheusrule -n {NAMESPACE}
   kubectl describe md {MD} -n {NAMESPACE}
   python dev/podrunner.py --namespace {NAMESPACE}   # real serving processes for the pods
   curl -s localhost:{ports["metrics"]}/metrics | grep ^modeldeploy_     # operator metrics
   MLflow UI: {env["MLFLOW_TRACKING_URI"]}   Prometheus: {env.get("PROMETHEUS_URL", "-")}
   modeldeploy lineage {MODEL} {bad} --output json       # the rolled-back version
   Move the alias yourself (MLflow UI, or):
       .venv/bin/python -c "from mlflow import MlflowClient; MlflowClient('{uri}') \\
           .set_registered_model_alias('{MODEL}', 'champion', '1')"

   Stop everything:  make stack-down""")

    say("Dashboard pictures of the demo (no Grafana needed)")
    dashboard_pictures(stack, env, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
