"""Input drift (PSI per feature) and missing-value ratios over a sliding window of rows.

Per request the cost is one binning pass per feature and a bincount: the window keeps each row's
bin index per feature in a ring buffer plus running counts, so adding rows subtracts the rows
they displace. PSI itself is computed only when Prometheus scrapes (a handful of features times
a handful of bins), never on the request path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.tracking.baseline import DriftBaseline, FeatureBaseline

# Proportions are floored at this value before the log ratio, so an empty bin on either side
# gives a large but finite PSI (the usual convention; 1e-4 keeps one empty bin near 1).
PSI_EPSILON = 1e-4


def psi(
    expected: Sequence[float] | npt.NDArray[Any], actual: Sequence[float] | npt.NDArray[Any]
) -> float:
    """Population stability index: sum((a - e) * ln(a / e)) over bins; 0 for equal shapes.

    Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
    """
    e = np.maximum(np.asarray(expected, dtype=float), PSI_EPSILON)
    a = np.maximum(np.asarray(actual, dtype=float), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureSnapshot:
    name: str
    rows: int  # rows in the window
    missing_ratio: float
    psi: float | None  # None: no baseline for this feature, or too few non-missing rows


class _Binner:
    """Maps one column to bin indices; `missing` is the extra bin for NaN/None."""

    def __init__(self, baseline: FeatureBaseline | None) -> None:
        self.baseline = baseline
        self.kind = baseline.kind if baseline else "none"
        self.edges = np.asarray(baseline.edges if baseline else (), dtype=float)
        self.cats = {c: i for i, c in enumerate(baseline.categories)} if baseline else {}
        self.bins = baseline.bins if baseline else 0
        self.missing = self.bins

    def __call__(self, column: Any) -> npt.NDArray[np.int64]:
        if self.kind == "categorical":
            other = self.bins - 1
            return np.fromiter(
                (self.missing if _is_missing(v) else self.cats.get(str(v), other) for v in column),
                dtype=np.int64,
                count=len(column),
            )
        x = _as_float(column)
        nan = np.isnan(x)
        if self.kind == "none":
            return np.where(nan, self.missing, 0).astype(np.int64)
        idx = np.searchsorted(self.edges, x, side="right")
        if nan.any():
            idx[nan] = self.missing
        return idx.astype(np.int64, copy=False)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _as_float(column: Any) -> npt.NDArray[np.float64]:
    try:
        return np.asarray(column, dtype=float)
    except (TypeError, ValueError):
        out = np.empty(len(column), dtype=float)
        for i, v in enumerate(column):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                out[i] = math.nan
        return out


class FeatureWindow:
    """The last `size` rows, per feature: bin counts and missing counts.

    Features come from the baseline (PSI and missing ratio) and, where the baseline is absent,
    from the model signature (missing ratio only). Not thread-safe: the server mutates and reads
    it on its event loop only.
    """

    def __init__(
        self,
        features: Sequence[str],
        baseline: DriftBaseline | None,
        size: int = 1000,
        min_rows: int = 100,
    ) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        by_name = {f.name: f for f in baseline.features} if baseline else {}
        names = list(dict.fromkeys([*by_name, *features]))
        self.names = names
        self.binners = [_Binner(by_name.get(n)) for n in names]
        # Column c of the counts matrix: bins 0..B-1 then the missing bin at index B_f of each
        # feature; features have different bin counts, so each gets a stride of max_bins + 1.
        self.stride = max(2, max((b.bins for b in self.binners), default=0) + 1)
        for b in self.binners:
            if b.kind == "none":
                b.missing = self.stride - 1
        self.size = size
        self.min_rows = min_rows
        self.ring = np.zeros((size, len(names)), dtype=np.int64)
        self.offsets = np.arange(len(names), dtype=np.int64) * self.stride
        self.counts = np.zeros(len(names) * self.stride, dtype=np.int64)
        self.pos = 0
        self.filled = 0
        self._positions: dict[tuple[Any, ...], list[int]] = {}

    def __len__(self) -> int:
        return self.filled

    def observe(self, frame: Any) -> None:
        """Add the rows of a pandas DataFrame; columns it lacks count as missing."""
        if not self.names:
            return
        n = len(frame)
        if n == 0:
            return
        columns = tuple(frame.columns)
        positions = self._positions.get(columns)
        if positions is None:
            at = {str(col): i for i, col in enumerate(columns)}
            positions = [at.get(name, -1) for name in self.names]
            if len(self._positions) < 64:
                self._positions[columns] = positions
        # One matrix for all columns: per-column access through pandas costs far more.
        try:
            matrix = frame.to_numpy(dtype=float)
        except (TypeError, ValueError):
            matrix = frame.to_numpy(dtype=object)
        idx = np.empty((n, len(self.names)), dtype=np.int64)
        for j, (pos, binner) in enumerate(zip(positions, self.binners, strict=True)):
            idx[:, j] = binner.missing if pos < 0 else binner(matrix[:, pos])
        self._add(idx + self.offsets)

    def _add(self, flat: npt.NDArray[np.int64]) -> None:
        n = len(flat)
        if n >= self.size:
            flat = flat[-self.size :]
            self.ring[:] = flat
            self.counts[:] = np.bincount(flat.ravel(), minlength=len(self.counts))
            self.pos, self.filled = 0, self.size
            return
        slots = (self.pos + np.arange(n)) % self.size
        if self.filled + n > self.size:  # displaced rows leave the counts
            # Until the window is full, pos == filled and only the wrapped tail holds old rows.
            old_slots = slots[self.size - self.filled :] if self.filled < self.size else slots
            self.counts -= np.bincount(self.ring[old_slots].ravel(), minlength=len(self.counts))
        self.ring[slots] = flat
        self.counts += np.bincount(flat.ravel(), minlength=len(self.counts))
        self.pos = (self.pos + n) % self.size
        self.filled = min(self.size, self.filled + n)

    def snapshot(self) -> list[FeatureSnapshot]:
        out: list[FeatureSnapshot] = []
        for j, (name, binner) in enumerate(zip(self.names, self.binners, strict=True)):
            base = j * self.stride
            missing = int(self.counts[base + binner.missing])
            ratio = missing / self.filled if self.filled else 0.0
            value: float | None = None
            present = self.filled - missing
            if binner.baseline is not None and present >= self.min_rows:
                actual = self.counts[base : base + binner.bins] / present
                value = psi(binner.baseline.proportions, actual)
            out.append(FeatureSnapshot(name, self.filled, ratio, value))
        return out
