"""The shared registry cache: one load per question per TTL, single flight, bounded error
caching, model-wide invalidation that says whom to wake."""

from __future__ import annotations

import threading

import pytest

from modeldeploy.api.spec import ModelRef
from modeldeploy.registry.cache import Question, ResolutionCache
from modeldeploy.registry.types import ModelNotFound, RegistryUnreachable, ResolvedVersion

URI = "http://mlflow.mlflow.svc:5000"
CHAMPION = ModelRef("fraud-detector", alias="champion")
Q = Question(URI, "", CHAMPION)
TTL = 30.0
SAFETY = 5.0  # seconds a helper thread may take before the test gives up (not a measurement)


class FakeClock:
    """Monotonic seconds that move only when told; remembers which threads read it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._readers: set[int] = set()
        self._cv = threading.Condition()

    def __call__(self) -> float:
        with self._cv:
            self._readers.add(threading.get_ident())
            self._cv.notify_all()
            return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def forget_readers(self) -> None:
        with self._cv:
            self._readers.clear()

    def wait_for_readers(self, n: int) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: len(self._readers) >= n, timeout=SAFETY)


class Loader:
    """A fake registry call: returns (or raises) the next answer, counting calls."""

    def __init__(self, *answers: ResolvedVersion | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> ResolvedVersion:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def v(version: str, name: str = "fraud-detector") -> ResolvedVersion:
    return ResolvedVersion(name, version, run_id=f"run-{version}")


def test_askers_of_the_same_question_within_ttl_share_one_load() -> None:
    clock, load = FakeClock(), Loader(v("3"))
    cache = ResolutionCache(clock)
    results = []
    for i in range(5):
        results.append(cache.get(Q, TTL, load, asker=("ml", f"md-{i}")))
        clock.advance(TTL / 10)
    assert load.calls == 1
    assert [fresh for _, fresh in results] == [True, False, False, False, False]
    assert [answer for answer, _ in results] == [v("3")] * 5


def test_answer_as_old_as_the_ttl_is_loaded_again() -> None:
    clock, load = FakeClock(), Loader(v("3"), v("4"))
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, load)
    clock.advance(TTL - 0.001)
    assert cache.get(Q, TTL, load) == (v("3"), False)
    clock.advance(0.001)
    assert cache.get(Q, TTL, load) == (v("4"), True)
    assert load.calls == 2


def test_concurrent_askers_of_a_stale_key_wait_for_one_load() -> None:
    clock = FakeClock()
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, Loader(v("3")))
    clock.advance(TTL * 2)  # stale: every asker below finds it so before anyone reloads

    release = threading.Event()
    calls: list[str] = []

    def slow_load() -> ResolvedVersion:
        calls.append(threading.current_thread().name)
        release.wait(SAFETY)
        return v("4")

    n = 8
    results: dict[int, tuple[object, bool]] = {}

    def ask(i: int) -> None:
        results[i] = cache.get(Q, TTL, slow_load, asker=("ml", f"md-{i}"))

    clock.forget_readers()
    threads = [threading.Thread(target=ask, args=(i,), name=f"asker-{i}") for i in range(n)]
    for t in threads:
        t.start()
    try:
        # Every asker has read the clock, i.e. has found the entry stale, while the one load
        # is held open: without single flight each of them would now load.
        assert clock.wait_for_readers(n), "askers did not all reach the cache"
    finally:
        release.set()
        for t in threads:
            t.join(SAFETY)
    assert len(calls) == 1
    assert sorted(fresh for _, fresh in results.values()) == [False] * (n - 1) + [True]
    assert [answer for answer, _ in results.values()] == [v("4")] * n


@pytest.mark.parametrize(
    "error", [RegistryUnreachable("connection refused"), ModelNotFound("no such alias")]
)
def test_errors_are_cached_for_at_most_error_ttl(error: Exception) -> None:
    clock, load = FakeClock(), Loader(error, v("3"))
    cache = ResolutionCache(clock)
    assert cache.get(Q, TTL, load, error_ttl=2.0) == (error, True)
    clock.advance(1.9)
    assert cache.get(Q, TTL, load, error_ttl=2.0) == (error, False)  # not hammered
    clock.advance(0.1)
    assert cache.get(Q, TTL, load, error_ttl=2.0) == (v("3"), True)
    assert load.calls == 2


def test_successful_answers_are_not_cut_short_by_error_ttl() -> None:
    clock, load = FakeClock(), Loader(v("3"))
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, load, error_ttl=2.0)
    clock.advance(TTL / 2)
    assert cache.get(Q, TTL, load, error_ttl=2.0) == (v("3"), False)
    assert load.calls == 1


def test_error_ttl_longer_than_ttl_is_capped_at_ttl() -> None:
    clock, load = FakeClock(), Loader(RegistryUnreachable("down"), v("3"))
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, load, error_ttl=TTL * 10)
    clock.advance(TTL)
    assert cache.get(Q, TTL, load, error_ttl=TTL * 10) == (v("3"), True)


def test_error_ttl_zero_does_not_cache_errors() -> None:
    clock, load = FakeClock(), Loader(RegistryUnreachable("down"), v("3"))
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, load, error_ttl=0)
    clock.advance(0.5)
    assert cache.get(Q, TTL, load, error_ttl=0) == (v("3"), True)


def test_unexpected_exception_propagates_and_is_not_cached() -> None:
    clock, load = FakeClock(), Loader(KeyError("bug"), v("3"))
    cache = ResolutionCache(clock)
    with pytest.raises(KeyError):
        cache.get(Q, TTL, load)
    assert cache.get(Q, TTL, load) == (v("3"), True)


def test_different_credentials_are_a_different_question() -> None:
    clock = FakeClock()
    cache = ResolutionCache(clock)
    alice = Question(URI, Question.fingerprint({"MLFLOW_TRACKING_TOKEN": "alice-token"}), CHAMPION)
    bob = Question(URI, Question.fingerprint({"MLFLOW_TRACKING_TOKEN": "bob-token"}), CHAMPION)
    assert alice != bob
    assert cache.get(alice, TTL, Loader(v("3"))) == (v("3"), True)
    # Bob may not see what Alice's credentials could read: his question is asked on its own.
    assert cache.get(bob, TTL, Loader(ModelNotFound("forbidden")))[1] is True
    assert cache.get(alice, TTL, Loader(v("9"))) == (v("3"), False)


def test_different_registry_or_selector_is_a_different_question() -> None:
    cache = ResolutionCache(FakeClock())
    cache.get(Q, TTL, Loader(v("3")))
    for other in (
        Question("http://other:5000", "", CHAMPION),
        Question(URI, "", ModelRef("fraud-detector", alias="challenger")),
        Question(URI, "", ModelRef("fraud-detector", version="3")),
    ):
        assert cache.get(other, TTL, Loader(v("7")))[1] is True


def test_invalidate_model_forces_a_reload_and_returns_only_that_models_askers() -> None:
    clock = FakeClock()
    cache = ResolutionCache(clock)
    challenger = Question(URI, "", ModelRef("fraud-detector", alias="challenger"))
    other = Question(URI, "", ModelRef("churn-model", alias="champion"))
    cache.get(Q, TTL, Loader(v("3")), asker=("ml", "fraud"))
    cache.get(Q, TTL, Loader(v("3")), asker=("team-b", "fraud"))
    cache.get(challenger, TTL, Loader(v("4")), asker=("ml", "fraud-canary"))
    cache.get(other, TTL, Loader(v("8", "churn-model")), asker=("ml", "churn"))

    woken = cache.invalidate_model("fraud-detector")

    assert woken == {("ml", "fraud"), ("team-b", "fraud"), ("ml", "fraud-canary")}
    assert cache.get(Q, TTL, Loader(v("5"))) == (v("5"), True)
    assert cache.get(challenger, TTL, Loader(v("6"))) == (v("6"), True)
    assert cache.get(other, TTL, Loader(v("99", "churn-model"))) == (v("8", "churn-model"), False)


def test_invalidating_an_unknown_model_wakes_nobody() -> None:
    cache = ResolutionCache(FakeClock())
    cache.get(Q, TTL, Loader(v("3")), asker=("ml", "fraud"))
    assert cache.invalidate_model("nobody-asked") == set()


def test_forgotten_asker_is_not_woken() -> None:
    cache = ResolutionCache(FakeClock())
    cache.get(Q, TTL, Loader(v("3")), asker=("ml", "fraud"))
    cache.get(Q, TTL, Loader(v("3")), asker=("ml", "deleted"))
    cache.forget_asker(("ml", "deleted"))
    assert cache.invalidate_model("fraud-detector") == {("ml", "fraud")}


def test_invalidation_during_an_in_flight_load_forces_the_next_asker_to_reload() -> None:
    clock = FakeClock()
    cache = ResolutionCache(clock)
    entered, release = threading.Event(), threading.Event()

    def load_started_before_the_alias_moved() -> ResolvedVersion:
        entered.set()
        release.wait(SAFETY)
        return v("3")

    t = threading.Thread(target=cache.get, args=(Q, TTL, load_started_before_the_alias_moved))
    t.start()
    try:
        assert entered.wait(SAFETY)
        cache.invalidate_model("fraud-detector")  # the registry says: the alias moved
    finally:
        release.set()
        t.join(SAFETY)
    assert cache.get(Q, TTL, Loader(v("4"))) == (v("4"), True)


# --- credentials fingerprint ---------------------------------------------------------------

SECRET_CREDS = {
    "MLFLOW_TRACKING_USERNAME": "svc-modeldeploy",
    "MLFLOW_TRACKING_PASSWORD": "s3cr3t-Pa55word!",
    "MLFLOW_TRACKING_TOKEN": "dapi0123456789abcdef",
}


def test_fingerprint_never_contains_the_secret_text() -> None:
    fp = Question.fingerprint(SECRET_CREDS)
    q = Question(URI, fp, CHAMPION)
    for secret in SECRET_CREDS.values():
        for text in (fp, repr(q), str(q)):
            assert secret not in text
            assert secret[:6] not in text
    assert len(fp) == 16 and int(fp, 16) >= 0


def test_fingerprint_is_stable_order_independent_and_sensitive_to_every_value() -> None:
    fp = Question.fingerprint(SECRET_CREDS)
    assert Question.fingerprint(dict(reversed(list(SECRET_CREDS.items())))) == fp
    for key in SECRET_CREDS:
        changed = SECRET_CREDS | {key: SECRET_CREDS[key] + "x"}
        assert Question.fingerprint(changed) != fp
    assert Question.fingerprint({}) == ""


CHALLENGER = ModelRef("fraud-detector", alias="challenger")
Q2 = Question(URI, "", CHALLENGER)


def test_polling_asks_each_question_once_per_interval_and_wakes_only_its_changed_askers() -> None:
    """Issue 14: polling reconciled every ModelDeployment each interval; now one registry call
    per distinct question, and only the askers of an answer that changed are woken."""
    clock = FakeClock()
    cache = ResolutionCache(clock)
    champion, challenger = Loader(v("3"), v("3"), v("4")), Loader(v("7"))
    for i in range(3):
        cache.get(Q, TTL, champion, asker=("ml", f"a-{i}"))
    cache.get(Q2, TTL, challenger, asker=("ml", "b"))
    assert cache.poll() == set()  # nothing is due yet
    clock.advance(TTL)
    assert cache.poll() == set()  # asked again: same answers, nobody woken
    assert (champion.calls, challenger.calls) == (2, 2)
    clock.advance(TTL)
    assert cache.poll() == {("ml", "a-0"), ("ml", "a-1"), ("ml", "a-2")}
    assert (champion.calls, challenger.calls) == (3, 3)
    assert cache.get(Q, TTL, champion)[0] == v("4")  # the woken reconcile reads the new answer


def test_polling_follows_the_shortest_interval_of_the_askers_still_asking() -> None:
    clock, load = FakeClock(), Loader(v("3"))
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, load, asker=("ml", "slow"))
    cache.get(Q, 5.0, load, asker=("ml", "fast"))
    assert cache.next_due() == 5.0
    clock.advance(5.0)
    cache.poll()
    assert load.calls == 2
    cache.forget_asker(("ml", "fast"))
    cache.forget_asker(("ml", "slow"))
    clock.advance(TTL)
    cache.poll()  # nobody asks any more: not asked
    assert load.calls == 2 and cache.next_due() is None


def test_polling_wakes_askers_when_an_error_begins_or_ends() -> None:
    clock = FakeClock()
    load = Loader(v("3"), RegistryUnreachable("down"), RegistryUnreachable("down"), v("3"))
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, load, asker=("ml", "a"))
    woken = []
    for _ in range(3):
        clock.advance(TTL)
        woken.append(cache.poll())
    assert woken == [{("ml", "a")}, set(), {("ml", "a")}]


def test_the_poller_wakes_each_changed_asker_through_the_operator() -> None:
    from modeldeploy.registry.poller import RegistryPoller

    clock = FakeClock()
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, Loader(v("3"), v("4")), asker=("ml", "a"))
    cache.get(Q2, TTL, Loader(v("7")), asker=("ml", "b"))
    woken: list[tuple[str, str]] = []
    poller = RegistryPoller(cache, woken.append, active=lambda: True)
    clock.advance(TTL)
    assert poller.poll_once() == {("ml", "a")}
    assert woken == [("ml", "a")]


def test_an_audit_entry_the_operator_wrote_wakes_nobody_but_an_approval_does() -> None:
    from modeldeploy import names

    audit = {f"{names.TAG_AUDIT}20260101T000000.000Z.deploy.abc": "{}"}
    approved = {f"{names.TAG_APPROVED}production": "{}"}
    tagged = ResolvedVersion("fraud-detector", "3", run_id="run-3", tags=audit)
    both = ResolvedVersion("fraud-detector", "3", run_id="run-3", tags={**audit, **approved})
    clock = FakeClock()
    cache = ResolutionCache(clock)
    cache.get(Q, TTL, Loader(v("3"), tagged, both), asker=("ml", "a"))
    clock.advance(TTL)
    assert cache.poll() == set()
    clock.advance(TTL)
    assert cache.poll() == {("ml", "a")}
