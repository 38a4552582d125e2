"""In-memory stand-ins for the few MlflowClient methods the governance commands call, and for
the cluster reads of lineage. The MLflow fake raises MLflow's own exceptions with the error codes
the real server answers with, so the production adapter (actions.MlflowRegistry) runs unchanged
on top of it; every write is logged in order, so a test can say "nothing was written"."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from modeldeploy.governance.actions import NotFound, Unreachable
from modeldeploy.governance.lineage import Event

CREATED_MS = 1_764_676_800_000  # 2025-12-02T12:00:00.000Z


class FakeMlflow:
    """Registered models, versions, runs and run artifacts in dicts."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {}  # name → {"tags": {}, "aliases": {}}
        self.versions: dict[tuple[str, str], dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.artifacts: dict[tuple[str, str], str] = {}
        self.writes: list[tuple[Any, ...]] = []
        self.down = False

    # --- test set-up ---------------------------------------------------------------------
    def add_model(self, name: str, versions: int = 1, run_id: str = "") -> None:
        self.models[name] = {"tags": {}, "aliases": {}}
        for _ in range(versions):
            self.add_version(name, run_id)

    def add_version(self, name: str, run_id: str = "", source: str = "") -> str:
        version = str(1 + sum(1 for m, _ in self.versions if m == name))
        self.versions[(name, version)] = {
            "tags": {},
            "run_id": run_id or None,
            "source": source or f"models:/m-{name}-{version}",
        }
        return version

    def add_run(
        self,
        run_id: str,
        params: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.runs[run_id] = {
            "params": dict(params or {}),
            "metrics": dict(metrics or {}),
            "tags": dict(tags or {}),
        }

    def tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.versions[(name, version)]["tags"])

    def aliases(self, name: str) -> dict[str, str]:
        return dict(self.models[name]["aliases"])

    def snapshot(self) -> Any:
        return copy.deepcopy((self.models, self.versions))

    # --- the MlflowClient methods ----------------------------------------------------------
    def get_registered_model(self, name: str) -> Any:
        self._reachable()
        m = self._model(name)
        return SimpleNamespace(name=name, tags=dict(m["tags"]), aliases=dict(m["aliases"]))

    def get_model_version(self, name: str, version: str) -> Any:
        self._reachable()
        v = self._version(name, version)
        aliases = [a for a, n in self._model(name)["aliases"].items() if n == version]
        return SimpleNamespace(
            name=name,
            version=version,
            tags=dict(v["tags"]),
            run_id=v["run_id"],
            source=v["source"],
            creation_timestamp=CREATED_MS,
            current_stage="None",
            description="",
            model_id=None,
            aliases=aliases,
        )

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._reachable()
        self._version(name, version)["tags"][key] = value
        self.writes.append(("set_model_version_tag", name, version, key, value))

    def delete_model_version_tag(self, name: str, version: str, key: str) -> None:
        self._reachable()
        self._version(name, version)["tags"].pop(key, None)
        self.writes.append(("delete_model_version_tag", name, version, key))

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._reachable()
        self._version(name, version)
        self._model(name)["aliases"][alias] = version
        self.writes.append(("set_registered_model_alias", name, alias, version))

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self._reachable()
        self._model(name)["tags"][key] = value
        self.writes.append(("set_registered_model_tag", name, key, value))

    def get_run(self, run_id: str) -> Any:
        self._reachable()
        if run_id not in self.runs:
            raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
        r = self.runs[run_id]
        info = SimpleNamespace(
            run_id=run_id,
            run_name=f"run-{run_id[:4]}",
            experiment_id="0",
            status="FINISHED",
            start_time=CREATED_MS - 60_000,
            end_time=CREATED_MS - 1_000,
            user_id="trainer",
        )
        data = SimpleNamespace(params=r["params"], metrics=r["metrics"], tags=r["tags"])
        return SimpleNamespace(info=info, data=data)

    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        self._reachable()
        if (run_id, path) not in self.artifacts:
            raise MlflowException(
                f"Failed to download artifacts from {path}", RESOURCE_DOES_NOT_EXIST
            )
        local = Path(dst_path) / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(self.artifacts[(run_id, path)], encoding="utf-8")
        return str(local)

    # --- internals -----------------------------------------------------------------------
    def _reachable(self) -> None:
        if self.down:
            raise MlflowException("API request failed: Connection refused", INTERNAL_ERROR)

    def _model(self, name: str) -> dict[str, Any]:
        if name not in self.models:
            raise MlflowException(
                f"Registered Model with name={name} not found", RESOURCE_DOES_NOT_EXIST
            )
        return self.models[name]

    def _version(self, name: str, version: str) -> dict[str, Any]:
        self._model(name)
        if (name, version) not in self.versions:
            raise MlflowException(
                f"Model Version (name={name}, version={version}) not found",
                RESOURCE_DOES_NOT_EXIST,
            )
        return self.versions[(name, version)]


class FakeCluster:
    """ModelDeployments and their Events; `down` makes every read fail as an unreachable API
    server does."""

    def __init__(self) -> None:
        self.mds: dict[tuple[str, str], dict[str, Any]] = {}
        self.md_events: dict[tuple[str, str], list[Event]] = {}
        self.down = False
        self.events_forbidden = False

    def add_md(
        self,
        namespace: str,
        name: str,
        model: str,
        status: Mapping[str, Any],
        registry: str | None = None,
    ) -> None:
        spec: dict[str, Any] = {"model": {"name": model, "alias": "production"}}
        if registry:
            spec["registry"] = {"trackingUri": registry}
        self.mds[(namespace, name)] = {
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
            "status": json.loads(json.dumps(dict(status))),
        }

    def get(self, namespace: str, name: str) -> Mapping[str, Any]:
        self._reachable()
        if (namespace, name) not in self.mds:
            raise NotFound(f"ModelDeployment {namespace}/{name} not found")
        return copy.deepcopy(self.mds[(namespace, name)])

    def find(self, namespace: str | None) -> list[Mapping[str, Any]]:
        self._reachable()
        return [copy.deepcopy(o) for (ns, _), o in self.mds.items() if namespace in (None, ns)]

    def events(self, namespace: str, name: str) -> list[Event]:
        self._reachable()
        if self.events_forbidden:
            raise Unreachable(f"cluster: Events of {namespace}/{name}: 403 Forbidden")
        return list(self.md_events.get((namespace, name), []))

    def _reachable(self) -> None:
        if self.down:
            raise Unreachable("cluster: connection refused")
