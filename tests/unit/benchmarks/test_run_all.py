"""docs/benchmarks.md keeps what was not re-measured: `make bench ONLY=...` reruns some benchmarks
and must not lose the others' sections (benchmarks/run_all.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]


def load_run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", REPO / "benchmarks" / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = load_run_all()


def test_a_rerun_replaces_its_section_and_keeps_the_others_in_benchmark_order() -> None:
    notes = "## Notes\n\nhand-written\n"
    doc = run_all.join({"b": "## B\n\nold b\n", "a": "## A\n\nold a\n"}, ["a", "b"], notes)
    found = run_all.sections(doc)
    found["b"] = "## B\n\nnew b\n"
    again = run_all.join(found, ["a", "b"], notes)
    assert again.index("old a") < again.index("new b") < again.index("hand-written")
    assert "old b" not in again and again.count("hand-written") == 1
    assert run_all.sections(again) == {"a": "## A\n\nold a\n\n", "b": "## B\n\nnew b\n\n"}


def test_a_section_of_a_benchmark_that_is_gone_is_dropped() -> None:
    doc = run_all.join({"a": "A\n", "gone": "G\n"}, ["a", "gone"], "")
    assert "G" not in run_all.join(run_all.sections(doc), ["a"], "")


def test_the_committed_document_has_a_section_for_every_benchmark_but_new_ones() -> None:
    """Sections of docs/benchmarks.md are found by their markers; a hand edit that broke one
    would make the next partial `make bench` drop it."""
    found = run_all.sections((REPO / "docs" / "benchmarks.md").read_text())
    assert {"rollback", "canary", "operator_failover"} <= set(found), sorted(found)
    assert set(found) <= set(run_all.benchmarks()), sorted(found)


def test_only_accepts_benchmark_names_and_nothing_else(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_all.main(["--only", "no-such-benchmark"])
    assert "invalid choice" in capsys.readouterr().err
