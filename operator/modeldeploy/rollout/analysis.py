"""The canary judge: a pure verdict on one measurement of canary against stable.

Rules (docs/progressive-delivery.md has the queries and a worked example):

* Too few canary answers in the window (`minRequests`) is Inconclusive: no traffic is not a pass.
* No measurement (Prometheus unreachable, an error answer) is Unavailable: never a pass.
* Error rate, latency p99 and input drift fail when the canary is above its limit *and* worse than
  the stable version over the same window: a limit alone would fail a canary that is better than
  what serves now; a comparison alone would promote anything no worse than a broken stable.
* Output drift compares the canary's predicted-class shares with the stable's (PSI); a drop of
  the mean top-class probability beyond `maxConfidenceDrop` fails too. Both need classifier
  metrics from both versions, with at least `minRequests` predictions each; otherwise they are
  not judged, and the record says so.
* Anything failing makes the verdict Failed; otherwise Passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from modeldeploy.analysis.types import Measurement, VersionSample
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import Limits
from modeldeploy.api.status import AnalysisRecord, iso
from modeldeploy.names import PSI_EPSILON

PASSED, FAILED = r.VERDICT_PASSED, r.VERDICT_FAILED
INCONCLUSIVE, UNAVAILABLE = r.VERDICT_INCONCLUSIVE, r.VERDICT_UNAVAILABLE


def share_psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """PSI of two count maps over the union of their keys, with one pseudo-count added to every
    key (Laplace smoothing). The canary's window holds few predictions: without smoothing, a
    class at 5 % of the stable's answers that happens not to appear in 50 canary answers would
    weigh in at the PSI_EPSILON floor (ln(0.05/1e-4) ≈ 6) and fail a good version; with it, that
    costs about 0.03, while a version answering one class only still scores well above 1."""
    keys = set(expected) | set(actual)
    e_total = sum(expected.values()) + len(keys)
    a_total = sum(actual.values()) + len(keys)
    total = 0.0
    for key in keys:
        e = max((expected.get(key, 0.0) + 1) / e_total, PSI_EPSILON)
        a = max((actual.get(key, 0.0) + 1) / a_total, PSI_EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def unavailable(step: int, now: datetime, why: str) -> AnalysisRecord:
    return AnalysisRecord(step, UNAVAILABLE, iso(now), f"no measurement: {why}")


def _worse(canary: float | None, stable: float | None, limit: float) -> bool:
    return canary is not None and canary > limit and (stable is None or canary > stable)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _quality(c: VersionSample, s: VersionSample, limits: Limits) -> tuple[list[str], float | None]:
    """Failures of the classifier checks, and the output PSI when it could be judged."""
    failures: list[str] = []
    psi = None
    enough = limits.min_requests
    if sum(c.class_counts.values()) >= enough and sum(s.class_counts.values()) >= enough:
        psi = share_psi(s.class_counts, c.class_counts)
        if psi > limits.max_output_psi:
            failures.append(
                f"predicted-class shares drifted from the stable version's "
                f"(PSI {psi:.3g} > {limits.max_output_psi:g})"
            )
    cc, sc = c.mean_confidence, s.mean_confidence
    if cc is not None and sc is not None and sc - cc > limits.max_confidence_drop:
        failures.append(
            f"mean confidence {cc:.3g} is {sc - cc:.3g} below the stable version's {sc:.3g} "
            f"(at most {limits.max_confidence_drop:g})"
        )
    return failures, psi


def judge(m: Measurement, limits: Limits, step: int, now: datetime) -> AnalysisRecord:
    c, s = m.canary, m.stable
    failures: list[str] = []
    if _worse(c.error_rate, s.error_rate, limits.max_error_rate):
        failures.append(
            f"error rate {_fmt(c.error_rate)} > {limits.max_error_rate:g} "
            f"(stable {_fmt(s.error_rate)})"
        )
    if _worse(c.latency_p99, s.latency_p99, limits.max_latency_p99):
        failures.append(
            f"p99 latency {_fmt(c.latency_p99)}s > {limits.max_latency_p99:g}s "
            f"(stable {_fmt(s.latency_p99)}s)"
        )
    if _worse(c.input_psi, s.input_psi, limits.max_input_psi):
        failures.append(
            f"input drift on {c.input_psi_feature or '?'}: PSI {_fmt(c.input_psi)} > "
            f"{limits.max_input_psi:g} (stable {_fmt(s.input_psi)})"
        )
    quality, psi = _quality(c, s, limits)
    failures += quality
    if c.requests < limits.min_requests:
        verdict = INCONCLUSIVE
        message = (
            f"{c.requests:.0f} canary requests in {m.window_seconds:.0f}s; "
            f"{limits.min_requests} needed before a step can pass or fail"
        )
    elif failures:
        verdict, message = FAILED, "; ".join(failures)
    else:
        verdict = PASSED
        message = (
            f"{c.requests:.0f} canary requests: error rate {_fmt(c.error_rate)} "
            f"(stable {_fmt(s.error_rate)}), p99 {_fmt(c.latency_p99)}s "
            f"(stable {_fmt(s.latency_p99)}s)"
        )
    return AnalysisRecord(
        step=step,
        verdict=verdict,
        at=iso(now),
        message=message,
        window_seconds=m.window_seconds,
        canary_requests=c.requests,
        stable_requests=s.requests,
        canary_error_rate=c.error_rate,
        stable_error_rate=s.error_rate,
        canary_latency_p99=c.latency_p99,
        stable_latency_p99=s.latency_p99,
        output_psi=psi,
        canary_confidence=c.mean_confidence,
        stable_confidence=s.mean_confidence,
        canary_input_psi=c.input_psi,
        stable_input_psi=s.input_psi,
    )
