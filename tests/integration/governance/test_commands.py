"""approve / revoke / promote / policy run as users run them, against the real MLflow server:
what they write is read back from MLflow, and every refusal leaves the model as it was."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from stack import free_port

from modeldeploy import names
from modeldeploy.governance import records
from tests.integration.governance.conftest import Cli, Models

APPROVED = names.TAG_APPROVED + "production"


def audit_actions(models: Models, name: str, version: str) -> list[str]:
    return [r.action for r in records.audit_records(models.tags(name, version))]


def test_approve_promote_revoke_round_trip(cli: Cli, models: Models):
    name = models.new_model(versions=2)

    res = cli("approve", name, "2", "--stage", "production", "--note", "offline eval ok")
    assert (res.code, res.err) == (0, "")
    assert res.out == f"approved {name} version 2 for production (by it-user)\n"
    approval = json.loads(models.tags(name, "2")[APPROVED])
    assert (approval["by"], approval["note"]) == ("it-user", "offline eval ok")

    assert cli("promote", name, "--version", "2", "--to", "staging").code == 0
    res = cli("promote", name, "--from", "staging", "--to", "production", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert (doc["action"], doc["version"], doc["stage"], doc["changed"]) == (
        "promote",
        "2",
        "production",
        True,
    )
    assert doc["record"] == {
        "stage": "production",
        "by": "it-user",
        "at": doc["record"]["at"],
        "from": "staging",
        "previous": None,
    }
    assert models.aliases(name) == {"staging": "2", "production": "2"}
    promoted = records.promotions(models.tags(name, "2"))
    assert {(p.stage, p.source) for p in promoted} == {
        ("staging", "version"),
        ("production", "staging"),
    }
    assert doc["audit"]["key"] in models.tags(name, "2")

    again = cli("promote", name, "--from", "staging", "--to", "production")
    assert (again.code, again.out) == (
        0,
        f"{name} version 2 is already @production; nothing written\n",
    )

    res = cli("revoke", name, "2", "--stage", "production", "--note", "wrong data", "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["record"]["note"] == "offline eval ok"  # the approval revoked
    assert APPROVED not in models.tags(name, "2")
    assert audit_actions(models, name, "2") == ["approve", "promote", "promote", "revoke"]


def test_promote_without_approval_is_refused_and_changes_nothing(cli: Cli, models: Models):
    name = models.new_model(versions=2)
    models.client.set_registered_model_alias(name, "staging", "2")
    models.client.set_registered_model_alias(name, "production", "1")
    before = models.snapshot(name)

    res = cli("promote", name, "--from", "staging", "--to", "production", "-o", "json")

    assert res.code == 1
    assert res.json()["code"] == 1
    assert f"model '{name}' version 2 has no approval for stage 'production'" in res.json()["error"]
    assert res.err.count("\n") == 1 and res.err.startswith("modeldeploy promote: error: ")
    assert models.snapshot(name) == before

    cli("approve", name, "2", "--stage", "staging")  # the wrong stage does not count
    assert cli("promote", name, "--version", "2", "--to", "production").code == 1
    assert models.aliases(name)["production"] == "1"


def test_unknown_names_exit_3_naming_them_and_write_nothing(cli: Cli, models: Models):
    name = models.new_model(versions=1)
    before = models.snapshot(name)
    cases = [
        (["approve", "gov-no-such-model", "1", "--stage", "production"], "gov-no-such-model"),
        (["approve", name, "7", "--stage", "production"], "version 7"),
        (["approve", name, "1", "--stage", "prod"], "unknown stage 'prod'"),
        (["promote", name, "--from", "staging", "--to", "dev"], "no alias @staging"),
        (["promote", name, "--from", "qa", "--to", "dev"], "unknown stage 'qa'"),
        (["promote", name, "--version", "1", "--to", "live"], "unknown stage 'live'"),
        (["revoke", name, "1", "--stage", "production"], "no approval for stage 'production'"),
        (["policy", "gov-no-such-model"], "gov-no-such-model"),
    ]
    with ThreadPoolExecutor(4) as pool:  # independent commands: run them side by side
        results = list(pool.map(lambda case: cli(*case[0]), cases))
    for (argv, named), res in zip(cases, results, strict=True):
        assert res.code == 3, (argv, res.err)
        assert named in res.err and res.err.count("\n") == 1, (argv, res.err)
        assert res.out == ""
    res = cli("approve", name, "7", "--stage", "production", "--output", "json")
    assert res.code == 3 and res.json()["code"] == 3 and "version 7" in res.json()["error"]
    assert models.snapshot(name) == before


def test_policy_shows_sets_and_governs_the_stages(cli: Cli, models: Models):
    name = models.new_model(versions=1)

    res = cli("policy", name)
    assert res.code == 0
    assert "stages dev → staging → production (the defaults" in res.out

    res = cli("policy", name, "--stages", "qa,live", "--require-approval", "live", "-o", "json")
    assert res.code == 0, res.err
    assert res.json() == {
        "model": name,
        "stages": ["qa", "live"],
        "requireApproval": ["live"],
        "explicit": True,
        "changed": True,
        "message": f"{name}: policy set",
    }
    tag = models.client.get_registered_model(name).tags[names.TAG_POLICY]
    assert json.loads(tag) == {"stages": ["qa", "live"], "requireApproval": ["live"]}

    assert cli("promote", name, "--version", "1", "--to", "production").code == 3
    assert cli("promote", name, "--version", "1", "--to", "qa").code == 0
    assert cli("promote", name, "--from", "qa", "--to", "live").code == 1
    assert cli("approve", name, "1", "--stage", "live").code == 0
    assert cli("promote", name, "--from", "qa", "--to", "live").code == 0
    assert models.aliases(name) == {"qa": "1", "live": "1"}

    bad = cli("policy", name, "--stages", "qa,latest")
    assert bad.code == 2 and "'latest' is not a valid stage name" in bad.err


def test_an_unreachable_registry_exits_4_fast(cli: Cli):
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    res = cli("approve", "m", "1", "--stage", "production", "-o", "json", MLFLOW_TRACKING_URI=dead)
    assert res.code == 4, res.err
    assert dead in res.json()["error"]
    assert time.monotonic() - started < 15


def test_no_registry_is_a_usage_error(cli: Cli):
    res = cli("policy", "m", MLFLOW_TRACKING_URI="")
    assert res.code == 2 and "MLFLOW_TRACKING_URI" in res.err
