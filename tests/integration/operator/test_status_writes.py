"""Status writes against a real API server are optimistic (controller/kube.py `patch_status`):
a patch made against the resourceVersion its status was read at goes through and answers the
new object; one made against an older version is refused with Conflict and changes nothing. The
reconciler reads ModelDeployments from memory and relies on this to never write a status planned
from a stale copy (controller/children.py)."""

from __future__ import annotations

import pytest

from modeldeploy.controller.kube import Conflict
from modeldeploy.controller.kube import Kube as OperatorKube
from tests.conftest import Cluster
from tests.integration.operator.conftest import Kube


def test_a_status_patch_from_a_stale_read_is_refused_and_changes_nothing(
    kube: Kube, cluster: Cluster, namespace: str
) -> None:
    created = kube.create_md(namespace, "s", {"model": {"name": "m", "alias": "champion"}})
    api = OperatorKube(cluster.api_client())
    read_at = created["metadata"]["resourceVersion"]
    first = {"phase": "Resolving", "observedGeneration": 1}
    written = api.patch_status(namespace, "s", {}, first, read_at)
    assert written["status"]["phase"] == "Resolving"
    assert written["metadata"]["resourceVersion"] != read_at

    with pytest.raises(Conflict):  # planned from the first read: the object moved on since
        api.patch_status(namespace, "s", {}, {"phase": "Failed"}, read_at)
    assert kube.status(namespace, "s")["phase"] == "Resolving"

    current = written["metadata"]["resourceVersion"]
    api.patch_status(namespace, "s", first, {"phase": "Failed", "observedGeneration": 1}, current)
    assert kube.status(namespace, "s")["phase"] == "Failed"
