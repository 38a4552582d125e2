"""What the registry tells the planner: a resolved version, or why there is none."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from modeldeploy.api.reasons import REGISTRY_UNREACHABLE
from modeldeploy.names import model_version_uri


@dataclass(frozen=True)
class ResolvedVersion:
    name: str
    version: str
    run_id: str
    source: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """The pinned models:/ URI: serving pods load exactly this version, whatever moves."""
        return model_version_uri(self.name, self.version)


class RegistryError(Exception):
    """The registry gave no version. `retryable` says whether asking again may help."""

    retryable = True


class RegistryUnreachable(RegistryError):
    """Connection refused, timeout, 5xx, auth failure: keep serving, retry with backoff."""


class ModelNotFound(RegistryError):
    """The registry answered: no such model, alias, version or stage. Retrying soon won't help,
    but the registry may change, so polling continues at the normal interval."""

    retryable = False


@dataclass(frozen=True)
class Unservable:
    """Why a version may not be rolled out (its pre-flight check failed), or, when `outage`, why
    it could not be checked: the registry did not answer, which says nothing about the version."""

    reason: str  # a reasons.py constant: VersionNotInRegistry, ModelArtifactsMissing, …
    message: str

    @property
    def outage(self) -> bool:
        return self.reason == REGISTRY_UNREACHABLE


def same_server(a: str, b: str) -> bool:
    """Whether two tracking URIs name the same registry: scheme and host compared without case,
    the path without a trailing slash. Anything else (another port, path, user info) is another
    server. Credentials meant for one registry go to no other."""
    pa, pb = urlsplit(a.strip()), urlsplit(b.strip())
    return (pa.scheme.lower(), pa.netloc.lower(), pa.path.rstrip("/")) == (
        pb.scheme.lower(),
        pb.netloc.lower(),
        pb.path.rstrip("/"),
    )


def redact(uri: str) -> str:
    """The URI without a password or token in its user info, for messages and output."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()
