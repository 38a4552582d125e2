"""Lease leader election, one round at a time on a fake clock (no threads, no sleeping): who
may take the Lease when, when a holder must stop counting itself the leader, and what a release
does. The rules are client-go's (docs/operator.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modeldeploy import names
from modeldeploy.controller.kube import Fenced, NotLeader
from modeldeploy.controller.leader import Holder, LeaderElector, Timing
from tests.unit.operator.fakes import FakeKube, FakeLeases

TIMING = Timing(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Candidate:
    def __init__(self, leases: FakeLeases, clock: Clock, identity: str) -> None:
        self.events: list[str] = []
        self.elector = LeaderElector(
            leases,
            "ns",
            "lease",
            identity,
            f"http://{identity}:8081",
            TIMING,
            on_started=lambda: self.events.append("started"),
            on_stopped=lambda: self.events.append("stopped"),
            clock=clock,
            wall=lambda: datetime.fromtimestamp(clock.t, UTC),
        )

    def step(self) -> bool:
        self.elector.step()
        return self.elector.leading()


@pytest.fixture
def two() -> tuple[FakeLeases, Clock, Candidate, Candidate]:
    leases, clock = FakeLeases(), Clock()
    return leases, clock, Candidate(leases, clock, "a"), Candidate(leases, clock, "b")


def test_the_first_candidate_creates_the_lease_and_the_second_follows_it(two) -> None:
    leases, _clock, a, b = two
    assert a.step() and a.events == ["started"]
    assert not b.step() and b.events == []
    assert b.elector.holder() == Holder("a", "http://a:8081")
    lease = leases.leases[("ns", "lease")]
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert lease["metadata"]["annotations"][names.ANNOTATION_LEADER_URL] == "http://a:8081"


def test_a_standby_takes_over_only_after_a_whole_lease_duration_without_renewal(two) -> None:
    leases, clock, a, b = two
    a.step()
    b.step()  # b sees the record now
    clock.t += 14.9
    assert not b.step()  # a is silent, but the lease has not run out on b's clock
    clock.t += 0.2
    assert b.step() and b.events == ["started"]
    spec = leases.leases[("ns", "lease")]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


def test_renewals_keep_a_standby_out_indefinitely(two) -> None:
    _, clock, a, b = two
    for _ in range(50):
        assert a.step()
        assert not b.step()
        clock.t += TIMING.retry_period
    assert a.events == ["started"] and b.events == []


def test_a_holder_that_cannot_renew_stops_leading_at_the_renew_deadline_before_expiry(
    two,
) -> None:
    leases, clock, a, b = two
    a.step()
    b.step()
    leases.down = True
    clock.t += TIMING.renew_deadline - 0.1
    assert a.step()  # still within the deadline: keeps leading
    clock.t += 0.2
    assert not a.step() and a.events == ["started", "stopped"]
    leases.down = False
    clock.t = 1000.0 + TIMING.lease_duration - 0.1
    assert not b.step()  # by the time b may take over, a had stopped for seconds
    clock.t += 0.2
    assert b.step()


def test_leading_expires_by_itself_when_the_renew_loop_is_stuck(two) -> None:
    """Writes are fenced by leading(), which needs no elector round to turn False: a thread
    stuck in a slow API call cannot keep its replica writing past the deadline."""
    _, clock, a, _ = two
    a.step()
    kube = FakeKube()
    fenced = Fenced(kube, a.elector.leading)  # type: ignore[arg-type]
    fenced.post_event({"metadata": {"name": "x"}}, "Normal", "R", "m")
    clock.t += TIMING.renew_deadline
    with pytest.raises(NotLeader):
        fenced.apply({"kind": "Service", "metadata": {"name": "x", "namespace": "ns"}})
    with pytest.raises(NotLeader):
        fenced.patch_status("ns", "x", {}, {"phase": "Healthy"})
    assert fenced.get_deployment("ns", "x") is None  # reads are not fenced
    assert kube.calls == ["event R"]


def test_a_release_lets_the_standby_in_at_its_next_round(two) -> None:
    leases, _clock, a, b = two
    a.step()
    b.step()
    a.elector.release()
    assert leases.holder("ns", "lease") is None
    assert b.step()  # no waiting for expiry


def test_two_candidates_racing_for_an_expired_lease_cannot_both_win(two) -> None:
    leases, clock, a, b = two
    c = Candidate(leases, clock, "c")
    a.step()
    b.step()
    c.step()
    clock.t += TIMING.lease_duration + 1
    # b and c read the same expired record; only the first replace carries the current version.
    lease_b = leases.read_lease("ns", "lease")
    won = [b.step(), c.step()]
    assert won == [True, False]
    assert leases.holder("ns", "lease") == "b"
    assert (
        lease_b is not None
        and leases.leases[("ns", "lease")]["metadata"]["resourceVersion"]
        != lease_b["metadata"]["resourceVersion"]
    )


def test_a_holder_that_finds_another_holder_stops_at_once(two) -> None:
    leases, _clock, a, _ = two
    a.step()
    lease = leases.read_lease("ns", "lease")
    assert lease is not None
    lease["spec"]["holderIdentity"] = "intruder"
    leases.replace_lease("ns", "lease", lease)
    assert not a.step() and a.events == ["started", "stopped"]


def test_an_unreachable_api_server_at_start_leaves_the_role_unknown(two) -> None:
    leases, _, a, _ = two
    leases.down = True
    assert not a.step()
    assert not a.elector.observed() and a.elector.holder() is None


def test_timing_must_leave_room_between_renewal_and_expiry() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        Timing(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        Timing(lease_duration=15, renew_deadline=10, retry_period=0)


def test_a_leader_whose_start_fails_steps_down_and_keeps_electing(two) -> None:
    """A replica that cannot start leading (its callback raised) must not hold the Lease it
    cannot serve: it releases it, so another replica takes over at once."""
    leases, _clock, a, b = two
    calls = []

    def broken() -> None:
        calls.append("started")
        if len(calls) == 1:
            raise RuntimeError("cannot start")

    a.elector.on_started = broken
    with pytest.raises(RuntimeError):
        a.step()
    assert not a.elector.leading() and leases.holder("ns", "lease") is None
    assert a.events == ["stopped"]  # what the start did is undone
    assert b.step()  # no waiting for expiry
