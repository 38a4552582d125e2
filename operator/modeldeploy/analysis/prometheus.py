"""Asks a Prometheus server how canary and stable served over one window (issue 12).

Every figure is one instant query at the judge's `at`, grouped by model_version and scoped to one
ModelDeployment and its two versions, so canary and stable are measured by the same rule at the
same moment: `increase()` per pod summed over the version's pods, as the recording rules do
(render/quality_rules.py). The queries narrow what comes back; the assembly below applies the
definitions of `VersionSample` again (4xx codes and the missing bin do not count), so a sample
means the same whatever series an answer holds.

A version with no series is a version without traffic (all zeros), not an error; only a failed
question is: `AnalysisUnavailable`, which the judge turns into a hold, never a pass.

Input PSI uses `serving.drift.psi`, the reference formula the recording rules are tested
against. Importing it is allowed by the import-linter contracts (only the serving runtime is
forbidden to import the operator, not the reverse); it is imported at the first analysis, not
with this module, because it costs numpy and the operator loads no numpy until a canary is
analysed (issue 14: the operator's memory).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from modeldeploy import names
from modeldeploy.analysis.types import AnalysisUnavailable, Measurement, VersionSample
from modeldeploy.render.quality_rules import selector

Vector = list[tuple[dict[str, str], float]]

# The `code` values that do not count as answers (client errors) and those that are errors.
CLIENT_ERROR_CODES: Final = "4.."
SERVER_ERROR_CODES: Final = "5.."
QUANTILE: Final = 0.99
_LE: Final = "le"  # Prometheus' histogram bucket label
_V: Final = names.PROM_MODEL_VERSION

# Figure names: keys of the answers and the prefix of an AnalysisUnavailable message.
REQUESTS: Final = "requests"
LATENCY: Final = "latency p99"
CLASSES: Final = "predicted classes"
CONFIDENCE_SUM: Final = "confidence sum"
CONFIDENCE_COUNT: Final = "confidence count"
FEATURE_ROWS: Final = "feature bin rows"
BASELINE_SHARE: Final = "feature baseline shares"


class PrometheusAPI:
    """The two questions the canary analysis asks Prometheus' HTTP API (Flagger's metrics
    providers have the same shape: run a query, say whether the server is online).

    Credentials may ride in the URL's userinfo (requests sends them as basic auth); messages
    name only the host and port.
    """

    def __init__(
        self, url: str, timeout: float = 5.0, session: requests.Session | None = None
    ) -> None:
        self._base = url.rstrip("/")
        self.endpoint = _endpoint(url)
        self.timeout = timeout
        self._session = session if session is not None else requests.Session()

    def query(self, expr: str, at: float) -> Vector:
        """The instant vector of `expr` at epoch `at`: (labels, value) pairs, NaN values dropped
        (histogram_quantile gives NaN for a version without observations)."""
        params = {"query": expr, "time": f"{at:.3f}"}
        try:
            resp = self._session.get(
                f"{self._base}/api/v1/query", params=params, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise self._unavailable(_transport_reason(exc)) from exc
        if resp.status_code != 200:
            raise self._unavailable(f"HTTP {resp.status_code}{_error_text(resp)}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise self._unavailable("the answer is not JSON") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            raise self._unavailable(f"status {_field(body, 'status')}{_error_text(resp)}")
        try:
            return _vector(body["data"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._unavailable(f"unparsable answer ({type(exc).__name__}: {exc})") from exc

    def is_online(self) -> bool:
        """Whether the server says it is ready to serve queries (/-/ready answers 200)."""
        try:
            resp = self._session.get(f"{self._base}/-/ready", timeout=self.timeout)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def _unavailable(self, reason: str) -> AnalysisUnavailable:
        return AnalysisUnavailable(f"Prometheus at {self.endpoint}: {reason}")


def _endpoint(url: str) -> str:
    """host:port of `url`, without userinfo (the only part of the URL a message may show)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


def _transport_reason(exc: requests.RequestException) -> str:
    """The exception's kind and its OS error, if any: requests' own text repeats the URL."""
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return f"{type(exc).__name__} ({errno.group(0)})" if errno else type(exc).__name__


def _error_text(resp: requests.Response) -> str:
    """Prometheus' errorType and error from an error answer, when it is JSON."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or "error" not in body:
        return ""
    return f" ({_field(body, 'errorType')}: {str(body['error'])[:300]})"


def _field(body: Any, key: str) -> str:
    return str(body.get(key)) if isinstance(body, dict) else "missing"


def _vector(data: Mapping[str, Any]) -> Vector:
    if data["resultType"] != "vector":
        raise ValueError(f"resultType {data['resultType']!r}, not a vector")
    out: Vector = []
    for item in data["result"]:
        value = float(item["value"][1])
        if not math.isnan(value):
            out.append(({str(k): str(v) for k, v in item["metric"].items()}, value))
    return out


def _promql_string(value: str) -> str:
    """A PromQL double-quoted string literal (Go escaping: backslash and quote)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def queries(
    namespace: str, name: str, versions: Sequence[str], window_seconds: int
) -> dict[str, str]:
    """The PromQL of each figure, in the order they are asked."""
    pattern = "|".join(re.escape(v) for v in dict.fromkeys(versions))
    s = f"{selector(namespace, name)}, {_V}=~{_promql_string(pattern)}"
    w = f"[{window_seconds}s]"
    n = names
    not_4xx = f"{n.LABEL_CODE}!~{_promql_string(CLIENT_ERROR_CODES)}"
    present = f"{n.LABEL_BIN}!={_promql_string(n.BIN_MISSING)}"
    feature_bin = f"{_V}, {n.LABEL_FEATURE}, {n.LABEL_BIN}"
    return {
        REQUESTS: f"sum by ({_V}, {n.LABEL_CODE}) "
        f"(increase({n.PREDICTION_REQUESTS}{{{s}, {not_4xx}}}{w}))",
        LATENCY: f"histogram_quantile({QUANTILE}, sum by ({_V}, {_LE}) "
        f"(increase({n.PREDICTION_LATENCY}_bucket{{{s}}}{w})))",
        CLASSES: f"sum by ({_V}, {n.LABEL_CLASS}) (increase({n.PREDICTION_CLASS}{{{s}}}{w}))",
        CONFIDENCE_SUM: f"sum by ({_V}) (increase({n.PREDICTION_CONFIDENCE}_sum{{{s}}}{w}))",
        CONFIDENCE_COUNT: f"sum by ({_V}) (increase({n.PREDICTION_CONFIDENCE}_count{{{s}}}{w}))",
        FEATURE_ROWS: f"sum by ({feature_bin}) "
        f"(increase({n.FEATURE_BIN_ROWS}{{{s}, {present}}}{w}))",
        BASELINE_SHARE: f"max by ({feature_bin}) ({n.FEATURE_BASELINE_SHARE}{{{s}}})",
    }


def measure(
    api: PrometheusAPI,
    namespace: str,
    name: str,
    canary_version: str,
    stable_version: str,
    window_seconds: float,
    at: float,
) -> Measurement:
    """Canary and stable of one ModelDeployment over the `window_seconds` (whole seconds, at
    least one) before `at`. Raises AnalysisUnavailable, naming the figure, when a query fails."""
    seconds = max(1, round(window_seconds))
    answers: dict[str, Vector] = {}
    for figure, expr in queries(namespace, name, (canary_version, stable_version), seconds).items():
        try:
            answers[figure] = api.query(expr, at)
        except AnalysisUnavailable as exc:
            raise AnalysisUnavailable(f"{figure}: {exc}") from exc
    return Measurement(
        window_seconds=float(seconds),
        canary=_sample(canary_version, answers),
        stable=_sample(stable_version, answers),
    )


def _sample(version: str, answers: Mapping[str, Vector]) -> VersionSample:
    """One version's figures; zeros when no series names it (no traffic in the window)."""
    mine = {k: [(lb, v) for lb, v in rows if lb.get(_V) == version] for k, rows in answers.items()}
    answered, errors = 0.0, 0.0
    for labels, value in mine[REQUESTS]:
        code = labels.get(names.LABEL_CODE, "")
        if re.fullmatch(CLIENT_ERROR_CODES, code):
            continue
        answered += value
        if re.fullmatch(SERVER_ERROR_CODES, code):
            errors += value
    input_psi, feature = _input_psi(mine[FEATURE_ROWS], mine[BASELINE_SHARE])
    return VersionSample(
        requests=answered,
        errors=errors,
        latency_p99=next((v for _, v in mine[LATENCY]), None),
        class_counts={
            lb[names.LABEL_CLASS]: v for lb, v in mine[CLASSES] if names.LABEL_CLASS in lb
        },
        confidence_sum=sum(v for _, v in mine[CONFIDENCE_SUM]),
        confidence_count=sum(v for _, v in mine[CONFIDENCE_COUNT]),
        input_psi=input_psi,
        input_psi_feature=feature,
    )


def _by_feature(rows: Iterable[tuple[dict[str, str], float]]) -> dict[str, dict[str, float]]:
    """feature -> bin -> value; series without both labels, and the missing bin, left out."""
    out: dict[str, dict[str, float]] = {}
    for labels, value in rows:
        feature, bin_ = labels.get(names.LABEL_FEATURE), labels.get(names.LABEL_BIN)
        if feature is not None and bin_ is not None and bin_ != names.BIN_MISSING:
            bins = out.setdefault(feature, {})
            bins[bin_] = bins.get(bin_, 0.0) + value
    return out


def _input_psi(rows: Vector, baseline: Vector) -> tuple[float, str] | tuple[None, None]:
    """The largest PSI over features of this version's bin shares in the window against its
    training baseline's shares, and that feature; (None, None) without a feature that has both
    a baseline and rows. Bins are those of either side; an absent one has share 0 (floored at
    PSI_EPSILON by `psi`), as `serving.drift.psi` counts over all bins of the baseline."""
    from modeldeploy.serving.drift import psi  # numpy: see the module docstring

    counts, expected = _by_feature(rows), _by_feature(baseline)
    best: tuple[float, str] | None = None
    for feature in sorted(counts.keys() & expected.keys()):
        total = sum(counts[feature].values())
        if total <= 0:
            continue
        bins = sorted(counts[feature].keys() | expected[feature].keys())
        value = psi(
            [expected[feature].get(b, 0.0) for b in bins],
            [counts[feature].get(b, 0.0) / total for b in bins],
        )
        if best is None or value > best[0]:
            best = (value, feature)
    return best if best is not None else (None, None)
