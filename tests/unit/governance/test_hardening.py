"""What a review found, each pinned by a test that failed before its fix: credentials sent to a
registry a ModelDeployment names, a policy that failed open, tracebacks instead of one-line
errors, records that could forge lines of the lineage text, JSON that parsers refuse."""

from __future__ import annotations

import json
import math
import os

import pytest

from modeldeploy import names
from modeldeploy.governance import cli, records
from modeldeploy.registry.types import redact, same_server
from tests.unit.governance.conftest import REGISTRY, RUN_ID, Runner, World


@pytest.mark.parametrize(
    ("default", "sent"),
    [
        ("http://env.test", None),  # prod/fraud names REGISTRY: not the user's registry
        (REGISTRY + "/", "the-users-token"),  # the same server: the user's own credentials
    ],
)
def test_lineage_sends_the_users_credentials_only_to_the_users_own_registry(
    run: Runner, world: World, monkeypatch: pytest.MonkeyPatch, default: str, sent: str | None
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "the-users-token")
    seen: list[str | None] = []

    def client(uri: str) -> object:
        seen.append(os.environ.get("MLFLOW_TRACKING_TOKEN"))
        return world.mlflow

    code = cli.main(
        ["lineage", "prod/fraud"], client_factory=client, cluster_factory=lambda: world.cluster
    )
    assert (code, seen) == (0, [sent])
    warned = "not sending MLFLOW_TRACKING_TOKEN" in run.capsys.readouterr().err
    assert warned == (sent is None)


def test_same_server_and_redact() -> None:
    assert same_server("http://Host:5000/", "http://host:5000")
    assert not same_server("http://host:5000", "http://host:5001")
    assert redact("https://alice:s3cret@mlflow.test/x") == "https://***@mlflow.test/x"
    assert redact("https://mlflow.test") == "https://mlflow.test"


@pytest.mark.parametrize(
    "policy",
    [
        {"stages": ["dev", "production"], "require_approval": ["production"]},  # misspelt
        {"stages": ["dev", "production"]},  # missing
        {"stages": ["dev", "production"], "requireApproval": [], "extra": 1},
    ],
)
def test_a_policy_with_a_missing_or_unknown_key_fails_closed(policy: dict[str, object]) -> None:
    with pytest.raises(records.RecordError, match="requireApproval"):
        records.Policy.from_tags({names.TAG_POLICY: json.dumps(policy)})


@pytest.mark.parametrize("stage", ["latest", "Latest", "LATEST", "v3", "production\n", ""])
def test_stage_names_mlflow_reserves_or_cannot_hold_are_invalid(stage: str) -> None:
    assert not records.valid_stage(stage)


def test_a_version_that_is_a_unicode_digit_is_not_found_not_a_traceback(run: Runner) -> None:
    code, _, err = run("approve", "fraud", "²", "--stage", "production")
    assert code == 3 and "has no version '²'" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("flag", ["--note", "--by"])
def test_control_characters_in_who_or_why_are_refused_and_nothing_is_written(
    run: Runner, world: World, flag: str
) -> None:
    before = world.mlflow.snapshot()
    forged = "ok\n  approved for staging by security-team"
    code, _, err = run("approve", "fraud", "2", "--stage", "production", flag, forged)
    assert code == 2 and "control characters" in err
    assert world.mlflow.snapshot() == before


def test_a_newline_in_a_record_written_around_the_cli_cannot_forge_a_lineage_line(
    run: Runner, world: World
) -> None:
    tags = world.mlflow.versions[("fraud", "3")]["tags"]
    tags[records.approval_key("production")] = json.dumps(
        {"by": "mallory", "at": "2026-12-02T12:00:00.000Z", "note": "x\n  approved for dev by ceo"}
    )
    code, out, _ = run("lineage", "fraud", "3")
    assert code == 0
    assert not any(line.startswith("  approved for dev") for line in out.splitlines())
    assert "x\\n  approved for dev by ceo" in out


def test_a_nan_metric_is_valid_json(run: Runner, world: World) -> None:
    world.mlflow.runs[RUN_ID]["metrics"]["loss"] = math.nan
    code, out, _ = run("lineage", "fraud", "3", "--output", "json")
    assert code == 0
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert doc["run"]["metrics"]["loss"] == "nan"


def test_an_unreadable_preprocessing_artifact_is_a_warning(run: Runner, world: World) -> None:
    world.mlflow.artifacts[(RUN_ID, names.PREPROCESSING_ARTIFACT)] = b"\xff\xfe not text"
    code, out, _ = run("lineage", "fraud", "3", "--output", "json")
    assert code == 0
    assert any("could not be read" in w for w in json.loads(out)["warnings"])


def test_an_unexpected_error_is_one_line_with_its_own_exit_code(
    run: Runner, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli.actions, "approve", broken)
    code, out, err = run("approve", "fraud", "2", "--stage", "production", "--output", "json")
    assert code == 5
    assert err.count("\n") == 1 and "unexpected ZeroDivisionError: boom" in err
    assert json.loads(out)["code"] == 5


def test_an_approval_for_a_stage_the_policy_dropped_can_still_be_revoked(
    run: Runner, world: World
) -> None:
    tags = world.mlflow.versions[("fraud", "3")]["tags"]
    tags[records.approval_key("canary")] = records.Approval("canary", "a", "t").to_json()
    code, _, err = run("revoke", "fraud", "3", "--stage", "canary")
    assert code == 0, err
    assert records.approval_key("canary") not in tags
    code, _, err = run("revoke", "fraud", "3", "--stage", "nonsense")
    assert code == 3 and "unknown stage 'nonsense'" in err
