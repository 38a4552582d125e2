"""The one door to the Kubernetes API.

Children are written only with server-side apply under one field manager, with force: the
operator owns every field it sets on its children, and a conflicting manager (a human's
`kubectl edit`) is overridden on the next reconcile, as a controller should. 404 on apply means
the namespace or owner is going away: the caller drops the key. 422 on apply to a child someone
else has edited means the edit cannot be overridden field by field (see `apply`): the child is
replaced. The ModelDeployment's own status
is written with a merge patch on the status subresource, once per change.

`KubeAPI` is what the reconciler needs of this door, so unit tests can stand an in-memory fake
in its place (tests/unit/operator/fakes.py), and `Fenced` wraps any KubeAPI so that its writes
happen only while this replica leads (controller/leader.py).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from modeldeploy import names

MONITORING_CRDS = {
    "ServiceMonitor": "servicemonitors.monitoring.coreos.com",
    "PrometheusRule": "prometheusrules.monitoring.coreos.com",
}
# The CRD watch (handlers.monitoring_crd_event) invalidates at once; this bounds staleness if a
# watch event is missed.
CRD_CHECK_SECONDS = 300.0
# Lease calls give up well within the renew deadline, so a hung connection cannot keep a leader
# from noticing that it cannot renew (controller/leader.py).
LEASE_TIMEOUT = 5.0
# How long a replaced child may take to go (a Deployment waits for its ReplicaSets to be orphaned).
REPLACE_WAIT_SECONDS = 20.0
log = logging.getLogger("modeldeploy.kube")


class KubeAPI(Protocol):
    """The reconciler's calls to the API server."""

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None: ...
    def monitoring_crds(self) -> frozenset[str]: ...
    def invalidate_monitoring_crds(self) -> None: ...
    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None: ...
    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...
    def json_patch(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None: ...
    def patch_status(
        self,
        namespace: str,
        name: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]: ...
    def post_event(
        self, owner: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None: ...


class LeaseAPI(Protocol):
    """Reads and optimistic writes of one coordination.k8s.io/v1 Lease, as plain dicts."""

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...


class Conflict(Exception):
    """The object changed since it was read (409), or already exists."""


class NotLeader(Exception):
    """A write refused because this replica does not hold the lease (any more)."""


class CountingApiClient(client.ApiClient):
    """An ApiClient that counts every request it sends by method and resource, as
    controller-runtime's rest_client_requests_total does: the typed APIs and the dynamic client
    both send through `call_api`. It is how a user (and the integration test) sees the
    operator's API writes: none while nothing changes (issue 14)."""

    def __init__(self, count: Callable[[str, str], None], configuration: Any = None) -> None:
        super().__init__(configuration)
        self._count = count

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self._count(method, resource_of(url))
        return super().call_api(method, url, *args, **kwargs)


def resource_of(url: str) -> str:
    """The resource a request URL names, with its subresource ("deployments",
    "modeldeployments/status"); "discovery" for the API's own listings."""
    parts = urlsplit(url).path.strip("/").split("/")
    if parts[0] == "api":
        rest = parts[2:]
    elif parts[0] == "apis":
        rest = parts[3:]
    else:
        return "other"
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return "discovery"
    return f"{rest[0]}/{rest[2]}" if len(rest) > 2 else rest[0]


class Kube:
    def __init__(
        self,
        api_client: client.ApiClient,
        component: str = "modeldeploy-operator",
        instance: str | None = None,
    ) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)
        self.component = component
        self.instance = instance or component  # which replica: Events say who reported them
        self._dyn: DynamicClient | None = None
        # Guards the dynamic client's discovery cache too: it is a plain dict that
        # `resources.get` fills lazily and `invalidate_cache` replaces, and workers that looked
        # kinds up at once (a restarted operator's first reconciles) failed with
        # KeyError: 'resources' inside it. Requests through a found resource need no lock.
        self._dyn_lock = threading.RLock()
        # (checked at, kinds, generation): invalidation bumps the generation, so an answer read
        # while a CRD event arrived is not kept as fresh (it may predate the event).
        self._crds: tuple[float, frozenset[str], int] = (float("-inf"), frozenset(), 0)
        self._crds_lock = threading.Lock()

    @property
    def dynamic(self) -> DynamicClient:
        with self._dyn_lock:
            if self._dyn is None:
                self._dyn = DynamicClient(self.api_client)
            return self._dyn

    # --- reads ---------------------------------------------------------------------------
    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name
            )
        )

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any]:
            # Raw JSON: the client's typed models and their sanitising took about half of the
            # CPU of each read (1.9 ms against 1.0 ms per GET, measured for issue 14).
            resp: Any = self.apps.read_namespaced_deployment(
                name, namespace, _preload_content=False
            )
            return dict(json.loads(resp.data))

        return _or_none(read)

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        secret = _or_none(lambda: self.core.read_namespaced_secret(name, namespace))
        if secret is None:
            return None
        data = secret.data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def monitoring_crds(self) -> frozenset[str]:
        """Which monitoring.coreos.com kinds the cluster serves (checked every 30 s at most)."""
        with self._crds_lock:
            checked, cached, generation = self._crds
        if time.monotonic() - checked < CRD_CHECK_SECONDS:
            return cached
        found = set()
        for kind, crd in MONITORING_CRDS.items():
            obj = _or_none(lambda crd=crd: self.ext.read_custom_resource_definition(crd))
            conditions = (obj.status.conditions or []) if obj is not None and obj.status else []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                found.add(kind)
        kinds = frozenset(found)
        if kinds != cached:
            with self._dyn_lock:
                if self._dyn is not None:
                    self._dyn.resources.invalidate_cache()
        with self._crds_lock:
            if self._crds[2] == generation:  # no CRD event while we read: keep the answer
                self._crds = (time.monotonic(), kinds, generation)
        return kinds

    def invalidate_monitoring_crds(self) -> None:
        with self._crds_lock:
            self._crds = (float("-inf"), self._crds[1], self._crds[2] + 1)

    # --- writes --------------------------------------------------------------------------
    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        resource = self._resource(obj["apiVersion"], obj["kind"])
        try:
            result = self._apply(resource, obj)
        except Exception as exc:  # the dynamic client raises its own error types
            if getattr(exc, "status", None) != 422:
                raise
            uid = self._edited_by_hand(resource, obj)
            if uid is None:
                raise  # invalid as we render it: not ours to paper over
            log.warning(
                "%s %s/%s, edited by another manager, cannot take the operator's fields "
                "(422 Invalid); replacing it",
                obj["kind"],
                meta.get("namespace"),
                meta["name"],
            )
            self._remove(resource, obj, uid)
            result = self._apply(resource, obj)
        return dict(result.to_dict())

    @staticmethod
    def _apply(resource: Any, obj: Mapping[str, Any]) -> Any:
        meta = obj["metadata"]
        return resource.server_side_apply(
            body=dict(obj),
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=names.FIELD_MANAGER,
            force_conflicts=True,
        )

    @staticmethod
    def _edited_by_hand(resource: Any, obj: Mapping[str, Any]) -> str | None:
        """The uid of the stored object when a manager other than the operator owns part of its
        spec (an edit), else None.

        A hand edit that changes a list item's key (a Service's or container's `port`) leaves
        the new item owned by its editor; the operator's item, merged in beside it, makes the
        object invalid (two ports named `http`), and forced apply cannot remove fields it does
        not own. Without this, every later reconcile of the ModelDeployment failed on that 422,
        rollbacks included."""
        meta = obj["metadata"]
        try:
            current = resource.get(name=meta["name"], namespace=meta.get("namespace")).to_dict()
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise
        for entry in current["metadata"].get("managedFields") or ():
            if entry.get("manager") == names.FIELD_MANAGER or entry.get("subresource"):
                continue
            if "f:spec" in (entry.get("fieldsV1") or {}):
                return str(current["metadata"]["uid"])
        return None

    @staticmethod
    def _remove(resource: Any, obj: Mapping[str, Any], uid: str) -> None:
        """Deletes the edited child (that very object: uid precondition) and waits until it is
        gone. A Deployment's ReplicaSets are orphaned, and the new Deployment adopts them: its
        pods keep serving throughout."""
        meta = obj["metadata"]
        orphan = obj["kind"] == "Deployment"
        body = {
            "propagationPolicy": "Orphan" if orphan else "Background",
            "preconditions": {"uid": uid},
        }
        try:
            resource.delete(name=meta["name"], namespace=meta.get("namespace"), body=body)
        except Exception as exc:
            if getattr(exc, "status", None) not in (404, 409):  # gone, or already replaced
                raise
        deadline = time.monotonic() + REPLACE_WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                found = resource.get(name=meta["name"], namespace=meta.get("namespace"))
            except Exception as exc:
                if getattr(exc, "status", None) == 404:
                    return
                raise
            if found.metadata.uid != uid:
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"{obj['kind']} {meta['name']} still there {REPLACE_WAIT_SECONDS}s after its delete"
        )

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        with self._dyn_lock:
            resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        try:
            resource.delete(name=name, namespace=namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        except Exception as exc:  # the dynamic client wraps 404 in its own NotFoundError
            if getattr(exc, "status", None) != 404:
                raise

    def _resource(self, api_version: str, kind: str) -> Any:
        with self._dyn_lock:
            try:
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                self.dynamic.resources.invalidate_cache()
                return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """Any object, or None when it or its kind (a CRD not installed) does not exist."""
        try:
            resource = self._resource(api_version, kind)
        except ResourceNotFoundError:
            return None
        try:
            return dict(resource.get(name=name, namespace=namespace).to_dict())
        except Exception as exc:  # the dynamic client wraps 404 in its own NotFoundError
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def json_patch(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None:
        """A JSON patch (RFC 6902): used only on objects the operator does not own (the user's
        HTTPRoute), where its `test` ops make a concurrent edit fail the patch, not corrupt it."""
        self._resource(api_version, kind).patch(
            body=ops,
            name=name,
            namespace=namespace,
            content_type="application/json-patch+json",
            field_manager=names.FIELD_MANAGER,
        )

    def patch_status(
        self,
        namespace: str,
        name: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patches status to `new`; keys present only in `old` are removed, in nested
        objects too (status.canary loses stepStartedAt when a step ends). With
        `resource_version` (the version `old` was read at) the patch is refused with Conflict if
        the object changed since: a status planned from a stale read is never written, and the
        patch computed from `old` removes exactly what `old` had. Returns the patched object."""
        patch: dict[str, Any] = {"status": merge_patch(old, new)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return dict(
            _conflicts(
                lambda: self.custom.patch_namespaced_custom_object_status(
                    names.GROUP, names.VERSION, namespace, names.PLURAL, name, patch
                )
            )
        )

    # --- the leader-election Lease ---------------------------------------------------------
    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        api = client.CoordinationV1Api(self.api_client)
        lease = _or_none(
            lambda: api.read_namespaced_lease(name, namespace, _request_timeout=LEASE_TIMEOUT)
        )
        return None if lease is None else self._plain(lease)

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        api = client.CoordinationV1Api(self.api_client)
        lease: Any = dict(body)  # the client serialises plain dicts as they are
        return self._plain(
            _conflicts(
                lambda: api.create_namespaced_lease(
                    namespace, lease, _request_timeout=LEASE_TIMEOUT
                )
            )
        )

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Optimistic: refused with Conflict if the Lease changed since `body` was read."""
        api = client.CoordinationV1Api(self.api_client)
        lease: Any = dict(body)
        return self._plain(
            _conflicts(
                lambda: api.replace_namespaced_lease(
                    name, namespace, lease, _request_timeout=LEASE_TIMEOUT
                )
            )
        )

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self.api_client.sanitize_for_serialization(obj))

    def post_event(self, owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = owner["metadata"]
        now = datetime.now(UTC)
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{names.GROUP}/{names.VERSION}",
                "kind": names.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component, "host": self.instance},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }
        # The answer is read (so its connection goes back to the pool) but not deserialised
        # into the client's typed model: nothing uses it.
        resp: Any = self.core.create_namespaced_event(
            meta["namespace"],
            event,  # type: ignore[arg-type]
            _preload_content=False,
        )
        _ = resp.data


class Fenced:
    """A KubeAPI whose writes go through only while `leading()` says so, checked just before each
    write: a replica that lost its lease stops writing at once, even in the middle of a
    reconcile (the reconcile fails with NotLeader and the key waits for the next leader)."""

    def __init__(self, kube: KubeAPI, leading: Callable[[], bool]) -> None:
        self._kube, self._leading = kube, leading

    def _check(self) -> None:
        if not self._leading():
            raise NotLeader("this replica does not hold the leader lease")

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._kube.get_modeldeployment(namespace, name)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._kube.get_deployment(namespace, name)

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self._kube.read_secret(namespace, name)

    def monitoring_crds(self) -> frozenset[str]:
        return self._kube.monitoring_crds()

    def invalidate_monitoring_crds(self) -> None:
        self._kube.invalidate_monitoring_crds()

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        return self._kube.apply(obj)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._check()
        self._kube.delete(api_version, kind, namespace, name)

    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        return self._kube.get_object(api_version, kind, namespace, name)

    def json_patch(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None:
        self._check()
        self._kube.json_patch(api_version, kind, namespace, name, ops)

    def patch_status(
        self,
        namespace: str,
        name: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        self._check()
        return self._kube.patch_status(namespace, name, old, new, resource_version)

    def post_event(self, owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self._check()
        self._kube.post_event(owner, type_, reason, message)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: nulls for removed keys,
    recursively into objects present in both (lists are replaced whole, as the RFC does)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    patch.update({k: None for k in old if k not in new})
    return patch


def _conflicts(write: Callable[[], Any]) -> Any:
    try:
        return write()
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(str(exc.reason)) from None
        raise


def _or_none(read: Any) -> Any:
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
