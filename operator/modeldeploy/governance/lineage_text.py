"""The lineage as text: the sections of the JSON (governance/lineage.py), in the same order,
one line per item, for people reading a terminal."""

from __future__ import annotations

import json
from typing import Any

from modeldeploy import names
from modeldeploy.governance.lineage import Lineage


def render_text(lineage: Lineage) -> str:
    """The lineage for people: the JSON's sections in the same order, one line per item."""
    d = _escaped(lineage.to_dict())
    model = d["model"]
    out = [f"lineage of {model['name']} version {model['version']} (registry {d['registry']})"]
    out += _text_datasets(d["datasets"])
    out += _text_preprocessing(d["preprocessing"])
    out += _text_run(d["run"])
    out += _text_version(d["modelVersion"])
    out += _text_deployments(d["deployments"], d["cluster"])
    out += [f"warning: {w}" for w in d["warnings"]]
    return "\n".join(out)


def _text_datasets(datasets: list[dict[str, Any]]) -> list[str]:
    lines = ["datasets:" if datasets else "datasets: none recorded"]
    for ds in datasets:
        algo = f"{ds['hashAlgorithm']}:" if ds["hashAlgorithm"] else ""
        target = f" target={ds['targets']}" if ds["targets"] else ""
        lines.append(
            f"  {ds['name']} ({ds['context'] or 'no context'}): {ds['source'] or 'source unknown'}"
            f" {algo}{ds['hash']} rows={ds['rows']} columns={ds['columns']}{target}"
            f" logged {ds['loggedAt'] or '?'}"
        )
    return lines


def _text_preprocessing(pre: dict[str, Any] | None) -> list[str]:
    if pre is None:
        return ["preprocessing: none recorded"]
    lines = [f"preprocessing ({pre['artifact']}):"]

    def walk(steps: list[dict[str, Any]], depth: int) -> None:
        for s in steps:
            cols = f" columns={_compact(s['columns'])}" if s["columns"] else ""
            params = f" {_compact(s['params'])}" if s["params"] else ""
            lines.append(f"{'  ' * depth}{s['name']}: {s['class']}{cols}{params}")
            walk(s["steps"], depth + 1)

    walk(pre["steps"], 1)
    return lines


def _text_run(run: dict[str, Any] | None) -> list[str]:
    if run is None:
        return ["training run: none (see warnings)"]
    lines = [
        f"training run {run['id']} ({run['name']}, experiment {run['experimentId']}) "
        f"{run['status']} {run['startTime'] or '?'} → {run['endTime'] or '…'}"
        f" by {run['user'] or 'unknown'}",
        f"  code: git {run['gitCommit'] or 'commit not recorded'}"
        + (f" ({run['source']})" if run["source"] else ""),
    ]
    # The preprocessing.* params repeat the preprocessing section above: the text says so once.
    prefix = names.PREPROCESSING_PARAMS + "."
    own = {k: v for k, v in run["params"].items() if not k.startswith(prefix)}
    lines += [f"  param {k} = {v}" for k, v in own.items()]
    if len(own) < len(run["params"]):
        n = len(run["params"]) - len(own)
        lines.append(f"  ({n} {prefix}* params: the preprocessing above)")
    lines += [f"  metric {k} = {v:g}" for k, v in run["metrics"].items()]
    if run["driftBaseline"]:
        lines.append(f"  drift baseline: {_compact(run['driftBaseline'])}")
    return lines


def _text_version(mv: dict[str, Any]) -> list[str]:
    lines = [
        f"model version {mv['name']} {mv['version']} created {mv['createdAt'] or '?'} "
        f"from {mv['source']}",
        "  aliases now: " + (" ".join(f"@{a}" for a in mv["aliases"]) or "none"),
    ]
    if mv["legacyStage"]:
        lines.append(f"  legacy MLflow stage: {mv['legacyStage']}")
    for a in mv["approvals"]:
        note = f": {a['note']}" if a["note"] else ""
        lines.append(f"  approved for {a['stage']} by {a['by']} at {a['at']}{note}")
    for p in mv["promotions"]:
        origin = "by version number" if p["from"] == "version" else f"from {p['from']}"
        was = f", previous version {p['previous']}" if p["previous"] else ""
        lines.append(f"  promoted to {p['stage']} by {p['by']} at {p['at']} ({origin}{was})")
    for r in mv["audit"]:
        rest = " ".join(f"{k}={_word(v)}" for k, v in r.items() if k not in {"action", "at", "by"})
        lines.append(f"  audit {r['at']} {r['action']} by {r['by']} {rest}".rstrip())
    if mv["rejected"]:
        lines.append(f"  rejected: {mv['rejected']}")
    return lines


def _text_deployments(deps: list[dict[str, Any]], cluster: dict[str, Any]) -> list[str]:
    if not cluster["read"]:
        return [f"deployments: not read ({cluster['error']})"]
    lines = ["deployments:" if deps else "deployments: none served this version"]
    for dep in deps:
        lines.append(
            f"  {dep['namespace']}/{dep['name']} (model {dep['model']}, "
            f"{dep['selector'] or 'no selector yet'}) phase {dep['phase'] or 'unknown'}"
            f" serving {dep['servingVersion'] or 'nothing'}"
        )
        for r in dep["rollouts"]:
            alert = f" [alert {r['alert']}]" if r["alert"] else ""
            reason = f": {r['reason']}" if r["reason"] else ""
            lines.append(
                f"    {r['kind']} version {r['version']} {r['startedAt']} → "
                f"{r['finishedAt'] or '…'} {r['outcome']}{reason}{alert}"
            )
        for e in dep["events"]:
            lines.append(f"    event {e['time']} {e['type']} {e['reason']}: {e['message']}")
    return lines


def _word(value: str) -> str:
    """A value as one word: quoted when it has spaces, so `k=v` pairs stay readable."""
    return json.dumps(value, ensure_ascii=False) if not value or " " in value else value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _escaped(value: Any) -> Any:
    """Every string with its control characters escaped: a record is one line, and a newline in
    a note or a tag must not print as a line of its own (a forged "approved by" line)."""
    if isinstance(value, str):
        return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in value)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value
