"""Children read from the watches, and applied only when they differ.

Before this, every reconcile server-side-applied all of a ModelDeployment's children and GET its
Deployment: at 1000 ModelDeployments idle, 6 to 8 API writes per object per minute and the API
server the busiest process (issue 14). Now:

- `ChildStore` keeps the latest body of each watched child (the kopf watches in
  controller/handlers.py feed it, and so do our own applies' responses): a reconcile reads its
  Deployment from memory, and falls back to a GET only on a miss while that kind's watch is still
  in its initial listing (`ChildStore.listed`). Past it, a miss means the child does not exist:
  at 1000 new ModelDeployments, GETs answered 404 before every first apply had been ~18 reads a
  second of the API server's time during the ramp.
- `Informed` wraps the KubeAPI the reconciler uses. Its `apply` writes a child only when the live
  one does not already hold the desired manifest. "Holds" needs two facts, because either alone
  is wrong: the hash of the desired manifest, stamped on the child as an annotation when it was
  applied, says the operator's last apply was this very manifest (so a field the operator stopped
  setting still gets removed by a new apply); and the desired manifest being contained in the
  live object (`contains`) says nobody edited the operator's fields since (so a hand edit is still
  repaired on the next reconcile, as before). Both live on the object, so an operator restarted
  with nothing changed writes nothing either.
- The ModelDeployments themselves are kept too (their watch, and the answers to our status
  patches): a reconcile reads its ModelDeployment from memory instead of a GET. At 1000 new
  ModelDeployments the ramp made ~3500 such GETs (two of every three reconciles changed
  nothing: a Deployment's intermediate status events), each ~14 ms of the API server's time.
  A status patch carries the resourceVersion its status was read at, so a status planned from
  a body older than the API server's is refused (Conflict), the body dropped from the store and
  the reconcile retried on a fresh read: reading from memory can delay a write, never make a
  wrong one.

Staleness: a body in the store can lag the API server only until the watch event of the change
arrives, and that event nudges the owner again, which then sees the change. A skipped apply of a
child deleted a moment ago is repaired the same way (the DELETED event). Kinds nobody watches
(the HorizontalPodAutoscaler) are read with a GET before each decision: a GET is no write, and
no stored body can hide an edit that no event would report.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections.abc import Mapping
from typing import Any

from modeldeploy import names
from modeldeploy.controller.kube import Conflict, KubeAPI

# The kinds controller/handlers.py watches (child_event); only these are served from memory.
WATCHED_KINDS = frozenset({"Deployment", "Service", "ServiceMonitor", "PrometheusRule"})
# ... and the ModelDeployments themselves (modeldeployment_event).
STORED_KINDS = WATCHED_KINDS | {names.KIND}
ChildKey = tuple[str, str, str]  # (kind, namespace, name)


def manifest_hash(obj: Mapping[str, Any]) -> str:
    """The hash of a desired manifest, without the annotation that carries it."""
    meta = dict(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(names.ANNOTATION_APPLIED_HASH, None)
    meta["annotations"] = annotations
    text = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def stamped(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` with its manifest hash as an annotation (a copy; `obj` is not changed)."""
    meta = dict(obj["metadata"])
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        names.ANNOTATION_APPLIED_HASH: manifest_hash(obj),
    }
    return {**obj, "metadata": meta}


def contains(live: Any, desired: Any) -> bool:
    """Whether every field of `desired` is in `live` with the same value. The API server adds
    defaults (to maps and to list items), so `live` may have more; a list must have the same
    length with each item contained. A null in `desired` matches an absent field. Anything the
    API server normalises differently (a quantity written "1000m") counts as different: the
    answer errs towards applying, never towards skipping."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        for key, value in desired.items():
            if key not in live:
                if value is None:
                    continue
                return False
            if not contains(live[key], value):
                return False
        return True
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired) and type(live) is type(desired)


def up_to_date(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether applying `desired` (stamped) to `live` would change nothing: the operator's last
    apply was this manifest, and nobody changed its fields since."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if annotations.get(names.ANNOTATION_APPLIED_HASH) != manifest_hash(desired):
        return False
    return contains(live, desired)


def _key(obj: Mapping[str, Any]) -> ChildKey:
    meta = obj["metadata"]
    return (str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


def _newer(candidate: Any, stored: Any) -> bool:
    """Whether a body of resourceVersion `candidate` may replace one of `stored`.
    resourceVersions are opaque to clients, but an answer older than one already stored must
    not win: a watch event of the state before our apply arrives after the apply's response.
    Numeric versions (etcd's revisions) are compared; anything else is taken as newer."""
    try:
        return int(candidate) >= int(stored)
    except (TypeError, ValueError):
        return True


class ChildStore:
    """The latest known body of each watched child, without its managedFields (the largest
    part, and read only on the rare 422 path, with a GET of its own). Bodies are kept as
    zlib-compressed compact JSON and decoded on each read: at 1000 ModelDeployments the four
    children as Python dicts took ~50 MB (the PrometheusRule alone ~13 kB of JSON each), as
    compressed JSON ~4 MB, for ~0.1 ms per read or event (measured for issue 14; the operator's
    peak RSS goal is 250 MiB). Each read is a fresh copy, so nobody can change a stored body and
    a body stored from kopf's event is independent of kopf."""

    def __init__(self) -> None:
        self._objects: dict[ChildKey, tuple[Any, bytes]] = {}  # (resourceVersion, zlib JSON)
        self._lock = threading.Lock()
        self._watching: set[str] = set()

    def listed(self, kind: str) -> bool:
        """Whether the watch of `kind` is past its initial listing (an event other than the
        listing's has arrived), so that every existing child of that kind has been seen and a
        miss means the child does not exist. kopf delivers a kind's listing before its watch
        events, but per object, so a late listing event can still follow: the cost of trusting
        a miss too early is one apply that changes nothing, never a wrong skip."""
        return kind in self._watching

    def seen(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event (kopf's `type`: None for the initial listing)."""
        if body.get("kind") not in STORED_KINDS:
            return
        if event_type is not None:
            self._watching.add(str(body["kind"]))
        if event_type == "DELETED":
            with self._lock:
                self._objects.pop(_key(body), None)
            return
        self.put(body)

    def put(self, body: Mapping[str, Any]) -> None:
        if body.get("kind") not in STORED_KINDS:
            return
        meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
        key = _key({**body, "metadata": meta})
        rv = meta.get("resourceVersion")
        packed = zlib.compress(
            json.dumps({**body, "metadata": meta}, separators=(",", ":")).encode(), 1
        )
        with self._lock:
            stored = self._objects.get(key)
            if stored is None or _newer(rv, stored[0]):
                self._objects[key] = (rv, packed)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._objects.get((kind, namespace, name))
        if stored is None:
            return None
        body: dict[str, Any] = json.loads(zlib.decompress(stored[1]))
        return body

    def drop(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


class Informed:
    """A KubeAPI whose child reads come from the store and whose applies write only what differs.
    Every other call goes to the wrapped KubeAPI unchanged."""

    def __init__(self, kube: KubeAPI, store: ChildStore) -> None:
        self._kube, self.store = kube, store

    def _live(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        if kind in WATCHED_KINDS:
            found = self.store.get(kind, namespace, name)
            if found is not None or self.store.listed(kind):
                return found  # a miss after the listing: the child does not exist, no GET
        if kind == "Deployment":
            live = self._kube.get_deployment(namespace, name)
        else:
            live = self._kube.get_object(api_version, kind, namespace, name)
        if live is not None:
            self.store.put(live)
        return live

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        live: dict[str, Any] | None = self._live("apps/v1", "Deployment", namespace, name)
        return live

    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        live: dict[str, Any] | None = self._live(api_version, kind, namespace, name)
        return live

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        desired = stamped(obj)
        meta = desired["metadata"]
        live = self._live(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        if live is not None and up_to_date(desired, live):
            return dict(live)
        result = self._kube.apply(desired)
        self.store.put(result)
        return result

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._kube.delete(api_version, kind, namespace, name)
        self.store.drop(kind, namespace, name)

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """From the store (the ModelDeployment watch, and our own status writes' answers); a
        GET only for one not seen yet, or after a Conflict dropped it."""
        found = self.store.get(names.KIND, namespace, name)
        if found is not None:
            return found
        live = self._kube.get_modeldeployment(namespace, name)
        if live is not None:
            self.store.put(live)
        return live

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self._kube.read_secret(namespace, name)

    def monitoring_crds(self) -> frozenset[str]:
        return self._kube.monitoring_crds()

    def invalidate_monitoring_crds(self) -> None:
        self._kube.invalidate_monitoring_crds()

    def json_patch(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None:
        self._kube.json_patch(api_version, kind, namespace, name, ops)

    def patch_status(
        self,
        namespace: str,
        name: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        try:
            result = self._kube.patch_status(namespace, name, old, new, resource_version)
        except Conflict:
            self.store.drop(names.KIND, namespace, name)  # the retry reads it afresh
            raise
        self.store.put(result)
        return result

    def post_event(self, owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self._kube.post_event(owner, type_, reason, message)
