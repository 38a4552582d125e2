"""Small in-memory stand-ins for the reconciler's two doors: the Kubernetes API (`Kube`) and
the registry client. They keep what was written and a log of calls in order, so tests can say
what happened before what. Pure-logic tests only; integration tests use the real parts."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from modeldeploy.api.spec import ModelRef
from modeldeploy.controller.kube import Conflict
from modeldeploy.registry.types import ModelNotFound, RegistryUnreachable, ResolvedVersion

MLMODEL = """
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
"""


class FakeKube:
    def __init__(self, monitoring: frozenset[str] = frozenset()) -> None:
        self.mds: dict[tuple[str, str], dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name)
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.events: list[tuple[str, str, str]] = []  # (type, reason, message)
        self.calls: list[str] = []  # "apply Deployment", "status", "event RolloutStarted", ...
        self.crds = monitoring
        self.fail_apply: Callable[[Mapping[str, Any]], bool] = lambda obj: False

    # --- test set-up ---------------------------------------------------------------------
    def add_md(self, namespace: str, name: str, spec: Mapping[str, Any], **meta: Any) -> None:
        self.mds[(namespace, name)] = {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{name}",
                "generation": 1,
                "resourceVersion": "1",
                **meta,
            },
            "spec": copy.deepcopy(dict(spec)),
        }

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.mds[(namespace, name)].get("status") or {})

    def set_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.mds[(namespace, name)]["status"] = copy.deepcopy(dict(status))

    def finish_rollout(self, namespace: str, name: str) -> None:
        """What the Deployment controller and kubelets do: every replica updated and ready."""
        dep = self.objects[("Deployment", namespace, name)]
        n = int(dep["spec"].get("replicas", 1))
        gen = dep["metadata"].setdefault("generation", 1)
        dep["status"] = {
            "observedGeneration": gen,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    # --- the Kube interface the reconciler uses ------------------------------------------
    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        md = self.mds.get((namespace, name))
        return copy.deepcopy(md) if md is not None else None

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        dep = self.objects.get(("Deployment", namespace, name))
        return copy.deepcopy(dep) if dep is not None else None

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))

    def monitoring_crds(self) -> frozenset[str]:
        return self.crds

    def invalidate_monitoring_crds(self) -> None:
        self.calls.append("invalidate crds")

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(f"apply {obj['kind']}")
        if self.fail_apply(obj):
            raise RuntimeError(f"apply {obj['kind']} refused")
        meta = obj["metadata"]
        key = (str(obj["kind"]), str(meta["namespace"]), str(meta["name"]))
        old = self.objects.get(key)
        new = copy.deepcopy(dict(obj))
        if old is not None:
            gen = int(old["metadata"].get("generation", 1))
            changed = old.get("spec") != new.get("spec")
            new["metadata"]["generation"] = gen + 1 if changed else gen
            new["status"] = old.get("status", {})
        else:
            new["metadata"]["generation"] = 1
        self.objects[key] = new
        return new

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.calls.append(f"delete {kind}")
        self.objects.pop((kind, namespace, name), None)

    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def json_patch(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None:
        """RFC 6902 `test` and `add` on paths of dicts and lists: what the operator sends."""
        self.calls.append(f"patch {kind}")
        obj = self.objects[(kind, namespace, name)]
        for op in ops:
            *parents, last = op["path"].strip("/").split("/")
            node: Any = obj
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if op["op"] == "test":
                if node[last] != op["value"]:
                    raise RuntimeError(f"test failed at {op['path']}")
            else:
                node[last] = op["value"]

    def patch_status(
        self,
        namespace: str,
        name: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """With the API server's optimistic concurrency: a patch made against an older
        resourceVersion than the stored one is refused."""
        md = self.mds[(namespace, name)]
        meta = md["metadata"]
        if resource_version is not None and resource_version != meta.get("resourceVersion"):
            raise Conflict(f"{name}: resourceVersion {resource_version} is not current")
        self.calls.append("status")
        md["status"] = copy.deepcopy(dict(new))
        meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
        return copy.deepcopy(md)

    def post_event(self, owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.calls.append(f"event {reason}")
        self.events.append((type_, reason, message))


class FakeLeases:
    """Leases with the API server's optimistic concurrency: a replace must carry the
    resourceVersion it read, else Conflict. `down` makes every call fail as an unreachable API
    server would. Shared by the electors of several replicas, as the API server is."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        new = copy.deepcopy(dict(body))
        new["metadata"] = {**new.get("metadata", {}), "resourceVersion": str(self.version)}
        return new

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.down:
            raise ConnectionError("API server unreachable")
        lease = self.leases.get((namespace, name))
        return copy.deepcopy(lease) if lease is not None else None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("API server unreachable")
        key = (namespace, str(body["metadata"]["name"]))
        if key in self.leases:
            raise Conflict("already exists")
        self.leases[key] = self._stored(body)
        return copy.deepcopy(self.leases[key])

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("API server unreachable")
        old = self.leases.get((namespace, name))
        if old is None:
            raise RuntimeError("404: no such Lease")
        if body["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        self.leases[(namespace, name)] = self._stored(body)
        return copy.deepcopy(self.leases[(namespace, name)])

    def holder(self, namespace: str = "ns", name: str = "lease") -> str | None:
        lease = self.leases.get((namespace, name))
        return None if lease is None else lease["spec"].get("holderIdentity")


class FakeCluster(FakeKube):
    """The whole API server as the Operator uses it: objects of its own, Leases possibly shared
    with other replicas' FakeClusters (one API server, several operators)."""

    def __init__(
        self, monitoring: frozenset[str] = frozenset(), leases: FakeLeases | None = None
    ) -> None:
        super().__init__(monitoring)
        self.lease_store = leases or FakeLeases()

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.lease_store.read_lease(namespace, name)

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.lease_store.create_lease(namespace, body)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.lease_store.replace_lease(namespace, name, body)


class FakeRegistry:
    """Answers for one registry: model name → {alias or "version:N" → version}; records the
    credentials each client was made with."""

    def __init__(self) -> None:
        self.versions: dict[str, set[str]] = {}
        self.aliases: dict[tuple[str, str], str] = {}
        self.down = False
        self.clients: list[tuple[str, dict[str, str]]] = []
        self.tags: list[tuple[str, str, str, str]] = []  # every set_version_tag call
        self.version_tags: dict[tuple[str, str], dict[str, str]] = {}  # what resolve returns
        self.fail_tags = False
        self.no_artifacts: set[tuple[str, str]] = set()

    def factory(self, uri: str, creds: Mapping[str, str]) -> FakeRegistryClient:
        self.clients.append((uri, dict(creds)))
        return FakeRegistryClient(self, uri)


class FakeRegistryClient:
    def __init__(self, registry: FakeRegistry, uri: str) -> None:
        self.registry, self.tracking_uri = registry, uri

    def resolve(self, model: ModelRef) -> ResolvedVersion:
        reg = self.registry
        if reg.down:
            raise RegistryUnreachable("connection refused")
        known = reg.versions.get(model.name, set())
        if model.alias:
            version = reg.aliases.get((model.name, model.alias))
        elif model.version:
            version = model.version if model.version in known else None
        else:
            version = max(known, key=int) if known else None
        if version is None:
            raise ModelNotFound(f"registered model {model.name!r} has no version")
        tags = dict(reg.version_tags.get((model.name, version), {}))
        return ResolvedVersion(model.name, version, f"run-{version}", tags=tags)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        if self.registry.fail_tags:
            raise RegistryUnreachable("connection refused")
        self.registry.tags.append((name, version, key, value))
        self.registry.version_tags.setdefault((name, version), {})[key] = value

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        if self.registry.down:
            raise RegistryUnreachable("connection refused")
        return dict(self.registry.version_tags.get((name, version), {}))

    def version_exists(self, name: str, version: str) -> bool:
        if self.registry.down:
            raise RegistryUnreachable("connection refused")
        return version in self.registry.versions.get(name, set())

    def read_mlmodel(self, name: str, version: str) -> str | None:
        return None if (name, version) in self.registry.no_artifacts else MLMODEL
