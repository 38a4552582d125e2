"""A shared, single-flight cache of registry answers.

Many ModelDeployments often ask the same question ("which version is fraud-detector@champion on
this registry?"). The cache keys answers by (registry, credentials fingerprint, model, selector):
while an answer is younger than its TTL (the poll interval) every asker gets it without a call,
and concurrent askers of a stale key wait for one call instead of making one each. A registry
webhook invalidates the keys of one model at once, and the cache remembers who asked what so the
operator can wake exactly those ModelDeployments.

Polling works the same way (`poll`): each interval, every question that has askers is asked
once, and only the askers of a question whose answer changed are woken. Before, every
ModelDeployment was reconciled every poll interval to learn that nothing had changed (issue 14).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from modeldeploy import names
from modeldeploy.api.spec import ModelRef
from modeldeploy.registry.types import RegistryError, ResolvedVersion

Answer = ResolvedVersion | RegistryError
Subscriber = tuple[str, str]  # (namespace, name) of a ModelDeployment


@dataclass(frozen=True)
class Question:
    tracking_uri: str
    credentials: str  # fingerprint, never the secret itself
    model: ModelRef

    @staticmethod
    def fingerprint(credentials: Mapping[str, str]) -> str:
        text = "\0".join(f"{k}={v}" for k, v in sorted(credentials.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16] if credentials else ""


@dataclass
class _Entry:
    answer: Answer | None = None
    fetched_at: float = float("-inf")
    # Bumped by invalidate_model; a load that started before the bump stores its answer as
    # already stale, so a webhook arriving mid-lookup is never lost.
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    load: Callable[[], ResolvedVersion] | None = None  # the last asker's, for `poll`


class ResolutionCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[Question, _Entry] = {}
        self._guard = threading.Lock()
        self._askers: dict[Question, set[Subscriber]] = defaultdict(set)
        self._intervals: dict[Question, dict[Subscriber, float]] = defaultdict(dict)

    def get(
        self,
        question: Question,
        ttl: float,
        load: Callable[[], ResolvedVersion],
        asker: Subscriber | None = None,
        error_ttl: float | None = None,
    ) -> tuple[Answer, bool]:
        """(answer, fresh): `fresh` is True when this call asked the registry itself.

        Errors are cached too (a dead registry is not hammered by every asker), but for at most
        `error_ttl`; `load` raising anything but RegistryError propagates (a bug, not an answer).
        """
        with self._guard:
            entry = self._entries.get(question) or self._entries.setdefault(question, _Entry())
            entry.load = load
            if asker:
                self._askers[question].add(asker)
                if ttl > 0:  # a fresh read (ttl 0) says nothing about how often to poll
                    self._intervals[question][asker] = ttl

        def valid() -> bool:
            if entry.answer is None:
                return False
            limit = ttl
            if not isinstance(entry.answer, ResolvedVersion) and error_ttl is not None:
                limit = min(ttl, error_ttl)
            return self._clock() - entry.fetched_at < limit

        if valid():
            return entry.answer, False  # type: ignore[return-value]
        with entry.lock:  # single flight: the first caller asks, the others wait and reuse
            if valid():
                return entry.answer, False  # type: ignore[return-value]
            generation = entry.generation
            try:
                answer: Answer = load()
            except RegistryError as exc:
                answer = exc
            with self._guard:
                entry.answer = answer
                entry.fetched_at = (
                    self._clock() if entry.generation == generation else float("-inf")
                )
            return answer, True

    def invalidate_model(self, model_name: str) -> set[Subscriber]:
        """Forgets every answer about `model_name`; returns who asked about it."""
        woken: set[Subscriber] = set()
        with self._guard:
            for question, entry in self._entries.items():
                if question.model.name == model_name:
                    entry.fetched_at = float("-inf")
                    entry.generation += 1
                    woken |= self._askers.get(question, set())
        return woken

    def forget_asker(self, asker: Subscriber) -> None:
        with self._guard:
            for askers in self._askers.values():
                askers.discard(asker)
            for intervals in self._intervals.values():
                intervals.pop(asker, None)

    def poll(self) -> set[Subscriber]:
        """Asks again each question whose answer is older than its askers' shortest interval,
        once; returns the askers of those whose answer changed (a new version, new tags, an
        error that began or ended). A question nobody asks any more is not asked."""
        woken: set[Subscriber] = set()
        for question, interval in self._due():
            entry = self._entries[question]
            before = entry.answer
            if entry.load is None:
                continue
            answer, fresh = self.get(question, interval, entry.load)
            if fresh and not same_answer(before, answer):
                with self._guard:
                    woken |= self._askers.get(question, set())
        return woken

    def next_due(self) -> float | None:
        """Seconds until the next question is due for `poll` (None: nothing to poll)."""
        now = self._clock()
        with self._guard:
            times = [
                self._entries[q].fetched_at + min(i.values()) - now
                for q, i in self._intervals.items()
                if i and q in self._entries
            ]
        return max(0.0, min(times)) if times else None

    def _due(self) -> list[tuple[Question, float]]:
        now = self._clock()
        with self._guard:
            return [
                (q, min(i.values()))
                for q, i in self._intervals.items()
                if i and q in self._entries and now - self._entries[q].fetched_at >= min(i.values())
            ]

    def invalidate_all(self) -> None:
        """Forgets every answer (a replica that becomes leader again may have missed events)."""
        with self._guard:
            for entry in self._entries.values():
                entry.fetched_at = float("-inf")
                entry.generation += 1


def same_answer(a: Answer | None, b: Answer | None) -> bool:
    """Whether two answers would plan the same: equal versions and tags, or errors of the same
    kind and message. Audit entries are left out: the operator writes one on each version it
    rolls out, and each woke every asker of that version once more, to plan nothing new."""
    if isinstance(a, RegistryError) or isinstance(b, RegistryError):
        return type(a) is type(b) and str(a) == str(b)
    if a is None or b is None:
        return a is b
    return _without_audit(a) == _without_audit(b)


def _without_audit(answer: ResolvedVersion) -> ResolvedVersion:
    tags = {k: v for k, v in answer.tags.items() if not k.startswith(names.TAG_AUDIT)}
    return replace(answer, tags=tags)
