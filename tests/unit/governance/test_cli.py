"""The CLI with the fakes injected: exit codes, the output rule (data on stdout, one error line
on stderr, plus {"error", "code"} on stdout with --output json), JSON shapes, who acts."""

from __future__ import annotations

import json

import pytest

from modeldeploy import cli as top
from modeldeploy.governance import cli, records
from tests.unit.governance.conftest import REGISTRY, RUN_ID, Runner


def test_approve_prints_what_it_wrote_as_json(run: Runner):
    code, doc, err = run.json("approve", "fraud", "2", "--stage", "production", "--note", "ok")

    assert code == 0 and err == ""
    assert list(doc) == [
        "action",
        "model",
        "version",
        "stage",
        "changed",
        "message",
        "record",
        "audit",
    ]
    assert doc["record"]["by"] == "carol" and doc["record"]["note"] == "ok"
    assert doc["audit"]["key"].startswith("modeldeploy.io/audit.")
    assert doc["audit"]["key"].endswith(".approve." + doc["audit"]["key"].rsplit(".", 1)[1])
    assert run.uris == ["http://env.test"]
    tags = run.world.mlflow.tags("fraud", "2")
    assert records.approval(tags, "production").by == "carol"  # type: ignore[union-attr]


def test_by_flag_wins_over_the_environment(run: Runner, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MODELDEPLOY_USER")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "svc-mlflow")
    assert run.json("approve", "fraud", "1", "--stage", "dev")[1]["record"]["by"] == "svc-mlflow"
    assert (
        run.json("approve", "fraud", "1", "--stage", "dev", "--by", "dan")[1]["record"]["by"]
        == "dan"
    )


def test_text_output_is_the_message(run: Runner):
    code, out, _ = run("approve", "fraud", "2", "--stage", "staging")
    assert (code, out) == (0, "approved fraud version 2 for staging (by carol)\n")


def test_promote_refused_exits_1_and_writes_nothing(run: Runner):
    run.world.mlflow.writes.clear()
    code, doc, err = run.json("promote", "fraud", "--version", "2", "--to", "production")

    assert code == 1
    assert doc == {"error": err.split(": error: ", 1)[1].strip(), "code": 1}
    assert "has no approval for stage 'production'" in doc["error"]
    assert err.count("\n") == 1 and err.startswith("modeldeploy promote: error: ")
    assert run.world.mlflow.writes == []


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["approve", "nope", "1", "--stage", "dev"], "model 'nope'"),
        (["approve", "fraud", "42", "--stage", "dev"], "version 42"),
        (["approve", "fraud", "1", "--stage", "prod"], "unknown stage 'prod'"),
        (["promote", "fraud", "--from", "dev", "--to", "staging"], "no alias @dev"),
        (["promote", "fraud", "--from", "qa", "--to", "staging"], "unknown stage 'qa'"),
        (["revoke", "fraud", "1", "--stage", "dev"], "no approval for stage 'dev'"),
        (["lineage", "prod/missing"], "ModelDeployment prod/missing"),
        (["lineage", "fraud", "9"], "version 9"),
    ],
)
def test_not_found_exits_3_naming_what(run: Runner, argv: list[str], named: str):
    run.world.mlflow.writes.clear()
    code, out, err = run(*argv)
    assert code == 3 and out == ""
    assert named in err and err.count("\n") == 1
    assert run.world.mlflow.writes == []


def test_usage_errors_exit_2_and_follow_the_output_rule(run: Runner):
    code, out, err = run("promote", "fraud", "--to", "production", "-o", "json")
    assert code == 2
    assert json.loads(out) == {
        "error": "one of the arguments --from --version is required",
        "code": 2,
    }
    assert err.startswith("usage: modeldeploy promote")
    assert run("policy", "fraud", "--stages", "a,latest")[0] == 2
    assert run("lineage", "no-slash")[0] == 2


def test_no_registry_is_a_usage_error(run: Runner, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    code, out, err = run("policy", "fraud")
    assert code == 2 and out == "" and "MLFLOW_TRACKING_URI" in err


def test_an_unreachable_registry_exits_4(run: Runner):
    run.world.mlflow.down = True
    code, doc, _ = run.json("approve", "fraud", "1", "--stage", "dev")
    assert code == 4 and doc["code"] == 4 and "http://env.test" in doc["error"]


def test_policy_shows_and_sets(run: Runner):
    code, out, _ = run("policy", "fraud")
    assert code == 0
    assert out.splitlines() == [
        "fraud: stages dev → staging → production (the defaults: the model has no policy tag)",
        "approval required for: production",
    ]
    code, doc, _ = run.json("policy", "fraud", "--stages", "qa,live", "--require-approval", "")
    assert code == 0
    assert (doc["stages"], doc["requireApproval"], doc["changed"]) == (["qa", "live"], [], True)
    assert run.json("policy", "fraud")[1]["explicit"] is True


def test_promote_no_op_exits_0_with_a_message(run: Runner):
    code, out, _ = run("promote", "fraud", "--from", "staging", "--to", "production")
    assert (code, out) == (0, "fraud version 3 is already @production; nothing written\n")


def test_lineage_of_a_deployment_uses_its_registry_and_serving_version(run: Runner):
    code, doc, err = run.json("lineage", "prod/fraud")
    assert code == 0 and err == ""
    assert run.uris == [REGISTRY]  # spec.registry.trackingUri over the environment's
    assert doc["model"] == {"name": "fraud", "version": "2"}
    assert doc["deployments"][0]["name"] == "fraud"


def test_the_tracking_uri_flag_wins_over_the_deployments(run: Runner):
    assert run("lineage", "prod/fraud", "--tracking-uri", "http://flag.test")[0] == 0
    assert run.uris == ["http://flag.test"]


def test_lineage_of_a_version_with_the_cluster_down_warns_and_exits_0(run: Runner):
    run.world.cluster.down = True
    code, doc, err = run.json("lineage", "fraud", "3")
    assert code == 0
    assert doc["run"]["id"] == RUN_ID and doc["cluster"]["read"] is False
    assert "modeldeploy lineage: warning: the cluster part is missing" in err


def test_lineage_of_a_deployment_with_the_cluster_down_exits_4(run: Runner):
    run.world.cluster.down = True
    code, doc, _ = run.json("lineage", "prod/fraud")
    assert code == 4 and doc["code"] == 4


def test_help_lists_the_exit_codes(run: Runner):
    code, out, _ = run("promote", "--help")
    assert code == 0 and "exit codes:" in out and "3  not found" in out


def test_the_modeldeploy_command_knows_every_governance_command():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == top.GOVERNANCE_COMMANDS  # type: ignore[attr-defined]


def test_the_modeldeploy_command_dispatches_and_lists_the_commands(
    capsys: pytest.CaptureFixture[str],
):
    assert top.main(["--help"]) == 0
    usage = capsys.readouterr().out
    for command in ("approve", "revoke", "promote", "policy", "lineage"):
        assert f"\n  {command} " in usage
    assert top.main(["policy", "--help"]) == 0
    assert "--require-approval" in capsys.readouterr().out
