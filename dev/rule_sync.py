"""PrometheusRules → rule files for the local Prometheus, the Prometheus Operator's other job.

Its one job: **keep `<stack>/prometheus/rules/podrunner-<ns>-<name>.yml` equal to the
PrometheusRules it is given, and reload Prometheus only when a file changed.**

* Each rule group keeps the fields Prometheus' rule files know (name, interval, limit,
  query_offset, labels, rules; per rule alert/record, expr, for, keep_firing_for, labels,
  annotations).
* A file is checked with `promtool check rules` when promtool is installed, standing in for the
  Operator's admission webhook: an invalid rule is logged once and its file removed instead of
  breaking every reload.
* Prometheus is reloaded at most once per `sync`, and only when a file was written or removed,
  because a reload empties its Alertmanager list for a few seconds (RESEND_DELAY in
  dev/stack.py). Files a crashed runner left are adopted and compared, so an unchanged one costs
  no reload.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("podrunner")

RULE_GROUP_KEYS = ("name", "interval", "limit", "query_offset", "labels", "rules")
RULE_KEYS = ("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations")


def rule_file(pr: dict[str, Any]) -> str:
    """The rule file of one PrometheusRule: its groups with the fields Prometheus knows."""
    groups = [
        {k: g[k] for k in RULE_GROUP_KEYS if k in g}
        | {"rules": [{k: r[k] for k in RULE_KEYS if k in r} for r in g.get("rules") or []]}
        for g in (pr.get("spec") or {}).get("groups") or []
    ]
    return yaml.safe_dump({"groups": groups}, sort_keys=False)


def check_rules(promtool: str | None, content: str) -> str | None:
    """promtool's complaint about a rule file, or None (also when promtool is not installed)."""
    if not promtool:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as fh:
        fh.write(content)
        fh.flush()
        res = subprocess.run(
            [promtool, "check", "rules", fh.name],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    return None if res.returncode == 0 else (res.stderr or res.stdout).strip()


class RuleSync:
    """The rule files of one runner: what it wrote (or adopted) and the reload that follows."""

    def __init__(self, rules_dir: Path, promtool: str | None, reload: Callable[[], None]) -> None:
        self.rules_dir = rules_dir
        self.promtool = promtool
        self.reload = reload
        self._rules: dict[str, str] = {}  # rule file name → content written
        self._owned: set[str] = set()

    def adopt(self, namespace: str) -> None:
        """Takes over the rule files a crashed runner left for `namespace`."""
        for path in self.rules_dir.glob(f"podrunner-{namespace}-*.yml"):
            self._rules[path.stem] = path.read_text()
            self._owned.add(path.stem)

    def sync(self, rules: dict[str, dict[str, Any]]) -> None:
        """Writes, replaces and removes files so they are `rules` (file name → PrometheusRule)."""
        changed = False
        for name, pr in rules.items():
            content = rule_file(pr)
            if self._rules.get(name) == content:
                continue
            problem = check_rules(self.promtool, content)
            if problem:
                if self._rules.get(name) != f"invalid:{content}":
                    log.error("PrometheusRule %s is invalid, not loaded: %s", name, problem)
                self._rules[name] = f"invalid:{content}"
                self._remove(name)
                continue
            path = self.rules_dir / f"{name}.yml"
            self._owned.add(name)
            self._rules[name] = content
            if path.exists() and path.read_text() == content:
                continue  # written by an earlier runner, already loaded
            self.rules_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(content)
            tmp.replace(path)
            changed = True
            log.info("PrometheusRule %s → %s", name, path)
        for name in [n for n in self._rules if n not in rules]:
            del self._rules[name]
            changed |= self._remove(name)
            self._owned.discard(name)
            log.info("PrometheusRule %s removed", name)
        if changed:
            self.reload()

    def close(self) -> None:
        """Removes every file this runner wrote or adopted; reloads when one was there."""
        removed = False
        for name in sorted(self._owned):
            removed |= self._remove(name)
        self._rules.clear()
        self._owned.clear()
        if removed:
            self.reload()

    def _remove(self, name: str) -> bool:
        path = self.rules_dir / f"{name}.yml"
        if path.exists():
            path.unlink()
            return True
        return False
