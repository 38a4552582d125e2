"""Input drift as counters: rows per feature per baseline bin, summed over pods by Prometheus.

Each request's rows are binned in one broadcast comparison for all numeric features (a dictionary
pass per categorical one) and counted in one bincount; the counts only grow, and Prometheus reads
them as the counter `feature_bin_rows_total{feature, bin}`. PSI against the training baseline
over any window and any set of pods is then a query (the operator's recording rules;
docs/alerting.md): the shares of `increase()` per bin against the baseline shares each pod
exports as `feature_baseline_share`. `psi` below is the same formula, used by tests as the
reference the rules must match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.names import BIN_MISSING, BIN_OTHER, BIN_PRESENT, PSI_EPSILON
from modeldeploy.tracking.baseline import DriftBaseline, FeatureBaseline


def psi(
    expected: Sequence[float] | npt.NDArray[Any], actual: Sequence[float] | npt.NDArray[Any]
) -> float:
    """Population stability index: sum((a - e) * ln(a / e)) over bins; 0 for equal shapes.

    Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
    """
    e = np.maximum(np.asarray(expected, dtype=float), PSI_EPSILON)
    a = np.maximum(np.asarray(actual, dtype=float), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


class _Binner:
    """Maps one column to bin indices; `missing` is the extra bin for NaN/None."""

    def __init__(self, baseline: FeatureBaseline | None) -> None:
        self.baseline = baseline
        self.kind = baseline.kind if baseline else "none"
        self.edges = np.asarray(baseline.edges if baseline else (), dtype=float)
        self.cats = {c: i for i, c in enumerate(baseline.categories)} if baseline else {}
        self.bins = baseline.bins if baseline else 0
        self.missing = self.bins
        self.labels = bin_labels(baseline)

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


class FeatureCounts:
    """Cumulative rows per (feature, bin) since the process started.

    Features come from the baseline (bins of the training data) and, where the baseline is
    absent, from the model signature (present/missing only). Not thread-safe: the server mutates
    it on its event loop only; a scrape reads `counts` there too.
    """

    def __init__(self, features: Sequence[str], baseline: DriftBaseline | None) -> None:
        by_name = {f.name: f for f in baseline.features} if baseline else {}
        names = list(dict.fromkeys([*by_name, *features]))
        self.names = names
        self.binners = [_Binner(by_name.get(n)) for n in names]
        # Feature j owns counts[j * stride : (j + 1) * stride]: its bins, then its missing bin;
        # features have different bin counts, so each gets a stride of max_bins + 1.
        self.stride = max(2, max((b.bins for b in self.binners), default=0) + 1)
        for b in self.binners:
            if b.kind == "none":
                b.missing = self.stride - 1
        self.offsets = np.arange(len(names), dtype=np.int64) * self.stride
        self.counts = np.zeros(len(names) * self.stride, dtype=np.int64)
        # Every feature's edges in one matrix, padded with NaN: `x >= NaN` is always False, so
        # the count of edges <= x per row is searchsorted(edges, x, "right") for every feature
        # at once, +inf and -inf included. A feature without a baseline has no edges (bin 0).
        self.edges = np.full((len(names), self.stride - 2), math.nan)
        for j, b in enumerate(self.binners):
            self.edges[j, : len(b.edges)] = b.edges
        self.missing = np.array([b.missing for b in self.binners], dtype=np.int64)
        self._layouts: dict[tuple[Any, ...], _Layout] = {}

    def _layout(self, columns: tuple[Any, ...], cache: bool) -> _Layout:
        layout = self._layouts.get(columns)
        if layout is None:
            at = {str(col): i for i, col in enumerate(columns)}
            layout = _Layout([at.get(name, -1) for name in self.names], self)
            if cache:
                self._layouts[columns] = layout
        return layout

    def observe(self, frame: Any) -> None:
        """Add the rows of a pandas DataFrame; columns it lacks count as missing."""
        n = len(frame)
        if not self.names or n == 0:
            return
        layout = self._layout(tuple(frame.columns), cache=len(self._layouts) < 64)
        # One matrix for all columns: per-column access through pandas costs far more.
        try:
            matrix = frame.to_numpy(dtype=float)
        except (TypeError, ValueError):
            matrix = frame.to_numpy(dtype=object)
        self._count(matrix, layout)

    def observe_matrix(self, matrix: npt.NDArray[Any], columns: tuple[str, ...]) -> None:
        """Add the rows of a numeric matrix whose columns are `columns` (the fast path's)."""
        if not self.names or len(matrix) == 0:
            return
        layout = self._layout(columns, cache=True)  # one fixed column tuple per model
        self._count(matrix.astype(float, copy=False), layout)  # as observe's to_numpy

    def _count(self, matrix: npt.NDArray[Any], layout: _Layout) -> None:
        if matrix.dtype == np.float64:
            idx = self.bins(matrix, layout)
        else:  # an object matrix (strings in a frame): column by column
            idx = np.empty((len(matrix), len(self.names)), dtype=np.int64)
            for j, (pos, binner) in enumerate(zip(layout.positions, self.binners, strict=True)):
                idx[:, j] = binner.missing if pos < 0 else binner(matrix[:, pos])
        self.counts += np.bincount((idx + self.offsets).ravel(), minlength=len(self.counts))

    def bins(self, matrix: npt.NDArray[np.float64], layout: _Layout) -> npt.NDArray[np.int64]:
        """Each row's bin per feature: numeric features in one broadcast comparison (one call
        per feature cost ~5 us each, most of a one-row request's drift work), categorical ones
        by their binner; absent columns land in the missing bin."""
        n = len(matrix)
        idx = np.empty((n, len(self.names)), dtype=np.int64)
        idx[:] = self.missing
        for lo in range(0, n, _CHUNK_ROWS):  # bounds the n x features x edges temporary
            x = matrix[lo : lo + _CHUNK_ROWS, layout.columns]
            below = np.count_nonzero(x[:, :, None] >= layout.edges, axis=2)
            idx[lo : lo + _CHUNK_ROWS, layout.features] = np.where(
                np.isnan(x), layout.missing, below
            )
        for j, pos in layout.categorical:
            idx[:, j] = self.binners[j](matrix[:, pos])
        return idx

    def series(self) -> list[tuple[str, str, int]]:
        """(feature, bin label, rows) for every bin of every feature, zeros included: a series
        that exists from the first scrape lets `increase()` count its first rows."""
        out: list[tuple[str, str, int]] = []
        for j, (name, binner) in enumerate(zip(self.names, self.binners, strict=True)):
            base = j * self.stride
            for i, label in enumerate(binner.labels):
                out.append((name, label, int(self.counts[base + i])))
            out.append((name, BIN_MISSING, int(self.counts[base + binner.missing])))
        return out

    def baseline_shares(self) -> list[tuple[str, str, float]]:
        """(feature, bin label, training share) for features with a baseline."""
        out: list[tuple[str, str, float]] = []
        for name, binner in zip(self.names, self.binners, strict=True):
            if binner.baseline is not None:
                out.extend(
                    (name, label, float(p))
                    for label, p in zip(binner.labels, binner.baseline.proportions, strict=True)
                )
        return out


_CHUNK_ROWS = 4096


class _Layout:
    """Where each feature's column is in a request's matrix, and the numeric features' edges in
    that order; built once per column tuple."""

    def __init__(self, positions: list[int], counts: FeatureCounts) -> None:
        self.positions = positions
        numeric = [
            j
            for j, pos in enumerate(positions)
            if pos >= 0 and counts.binners[j].kind != "categorical"
        ]
        self.features = np.array(numeric, dtype=np.intp)
        self.columns = np.array([positions[j] for j in numeric], dtype=np.intp)
        self.edges = counts.edges[self.features]
        self.missing = counts.missing[self.features]
        self.categorical = [
            (j, pos)
            for j, pos in enumerate(positions)
            if pos >= 0 and counts.binners[j].kind == "categorical"
        ]


def bin_labels(baseline: FeatureBaseline | None) -> tuple[str, ...]:
    """The `bin` label of each bin but the missing one: numeric bins by index ("0" holds values
    below the first edge), categorical ones by category, then BIN_OTHER for unseen categories;
    BIN_PRESENT for every value of a feature without a baseline."""
    if baseline is None:
        return (BIN_PRESENT,)
    if baseline.kind == "categorical":
        return (*baseline.categories, BIN_OTHER)
    return tuple(str(i) for i in range(baseline.bins))
