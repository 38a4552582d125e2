"""Pre-flight checks: may this model version be rolled out?

Before the operator points serving pods at a version they do not run yet (the selector moved, or
a rollback goes back), it asks the registry three things: the version exists, its artifacts
exist (its MLmodel file can be read), and the serving runtime will load it under the trust
setting the operator gives serving pods (`serving.trust.refusal`, the runtime's own rule). A
version failing any of them is not rolled out, so what serves now keeps serving.

Answers are kept briefly: a pass for `ok_ttl`, a failure for the shorter `failure_ttl`, so a
version whose artifacts appear later is rolled out soon after. A registry that does not answer
is no answer about the version: reported as an outage and not remembered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import yaml

from modeldeploy.api import reasons as r
from modeldeploy.names import model_version_uri
from modeldeploy.registry.types import ModelNotFound, RegistryError, Unservable
from modeldeploy.serving.config import ServeConfig
from modeldeploy.serving.trust import refusal

TRUST_ENV = "MODELDEPLOY_TRUST_MODEL_CODE"
OK_TTL_SECONDS = 60.0
FAILURE_TTL_SECONDS = 5.0
_MAX_ENTRIES = 4096


class VersionSource(Protocol):
    """What a pre-flight check asks of a registry (RegistryClient implements it)."""

    tracking_uri: str

    def version_exists(self, name: str, version: str) -> bool: ...

    def read_mlmodel(self, name: str, version: str) -> str | None: ...


@dataclass(frozen=True)
class _Result:
    failure: Unservable | None
    expires: float


class Preflight:
    def __init__(
        self,
        trust: str,
        *,
        ok_ttl: float = OK_TTL_SECONDS,
        failure_ttl: float = FAILURE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trust = trust
        self._ok_ttl, self._failure_ttl, self._clock = ok_ttl, failure_ttl, clock
        self._results: dict[tuple[str, str, str, str], _Result] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_serving_env(cls, serving_env: Iterable[tuple[str, str]]) -> Preflight:
        """Judged under the trust setting serving pods get: the operator's env for them, else
        the serving runtime's own default."""
        return cls(dict(serving_env).get(TRUST_ENV, ServeConfig.trust_model_code))

    def check(
        self,
        source: VersionSource,
        credentials: str,
        name: str,
        version: str,
        fresh: bool = False,
    ) -> Unservable | None:
        """None when `version` of model `name` may be rolled out, else why not. `credentials`
        is the fingerprint of the credentials `source` asks with (answers are kept per key);
        `fresh` asks the registry even when an answer is remembered."""
        key = (source.tracking_uri, credentials, name, version)
        now = self._clock()
        with self._lock:
            hit = self._results.get(key)
        if hit is not None and now < hit.expires and not fresh:
            return hit.failure
        try:
            failure = self._ask(source, name, version)
        except RegistryError as exc:
            return Unservable(r.REGISTRY_UNREACHABLE, str(exc))
        ttl = self._ok_ttl if failure is None else self._failure_ttl
        with self._lock:
            if len(self._results) >= _MAX_ENTRIES:
                self._results = {k: v for k, v in self._results.items() if v.expires > now}
            self._results[key] = _Result(failure, self._clock() + ttl)
        return failure

    def _ask(self, source: VersionSource, name: str, version: str) -> Unservable | None:
        if not source.version_exists(name, version):
            msg = r.MSG_NOT_IN_REGISTRY.format(model=name, version=version)
            return Unservable(r.VERSION_NOT_IN_REGISTRY, msg)
        try:
            text = source.read_mlmodel(name, version)
        except ModelNotFound:  # the version, or the run its source names, went meanwhile
            text = None
        if text is None:
            return Unservable(r.ARTIFACTS_MISSING, r.MSG_ARTIFACTS_MISSING)
        try:
            mlmodel = yaml.safe_load(text)
        except yaml.YAMLError:
            mlmodel = None
        if not isinstance(mlmodel, dict):
            return Unservable(r.MODEL_NOT_SERVABLE, r.MSG_MLMODEL_UNREADABLE)
        why = refusal(model_version_uri(name, version), mlmodel, self.trust)
        return None if why is None else Unservable(r.MODEL_NOT_SERVABLE, why)
