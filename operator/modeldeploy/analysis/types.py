"""A measurement of canary and stable over one window, as the judge reads it.

Counts, not ratios: the judge divides, so "no traffic" (zero requests) stays distinguishable from
"no errors", and every figure is the sum over all pods of the version (what Prometheus' `sum`
over `increase()` gives).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class AnalysisUnavailable(Exception):
    """Prometheus could not be asked (unreachable, an error answer, an unparsable one): never a
    pass. The message says which query failed and why, without credentials."""


@dataclass(frozen=True)
class VersionSample:
    """One version's serving metrics over the window, summed over its pods."""

    # Answers that count for the error rate: every code but 4xx (client errors are the client's).
    requests: float = 0.0
    errors: float = 0.0  # 5xx answers
    latency_p99: float | None = None  # seconds; None without observations
    # Predicted-class counts (prediction_class_total), classifiers only; empty otherwise.
    class_counts: Mapping[str, float] = field(default_factory=dict)
    # Top-class probability (prediction_confidence histogram): sum and count in the window.
    confidence_sum: float = 0.0
    confidence_count: float = 0.0
    # Largest input PSI over features of this version's rows against its own training baseline
    # (feature_bin_rows_total vs feature_baseline_share); None without a baseline or rows.
    input_psi: float | None = None
    input_psi_feature: str | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.confidence_count if self.confidence_count > 0 else None


@dataclass(frozen=True)
class Measurement:
    window_seconds: float
    canary: VersionSample
    stable: VersionSample
