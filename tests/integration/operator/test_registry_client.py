"""The operator's registry client (its own REST calls, registry/rest.py) against the real MLflow
server: every selector resolves to the version MLflow's own client names, tags read and written
are MLflow's, and a missing model or alias is ModelNotFound, not an outage."""

from __future__ import annotations

import warnings

import pytest
import yaml

from modeldeploy.api.spec import ModelRef
from modeldeploy.registry.client import RegistryClient
from modeldeploy.registry.types import ModelNotFound
from tests.integration.operator.conftest import Registry


def test_selectors_resolve_as_mlflows_client_answers(registry: Registry) -> None:
    model = registry.new_model(versions=3)
    registry.set_alias(model, "champion", "2")
    with warnings.catch_warnings():  # stages are deprecated in MLflow 3, still served
        warnings.simplefilter("ignore")
        registry.client.transition_model_version_stage(model, "1", "Staging")
        registry.client.transition_model_version_stage(model, "3", "Staging")
        staged = registry.client.get_latest_versions(model, ["Staging"])
    ours = RegistryClient(registry.uri)

    assert ours.resolve(ModelRef(model, alias="champion")).version == "2"
    assert ours.resolve(ModelRef(model, version="1")).run_id == registry.run_id
    assert ours.resolve(ModelRef(model, stage="Staging")).version == max(
        (mv.version for mv in staged), key=int
    )
    assert ours.resolve(ModelRef(model)).version == "3"

    ours.set_version_tag(model, "2", "modeldeploy.io/test", "yes")
    assert registry.client.get_model_version(model, "2").tags["modeldeploy.io/test"] == "yes"
    assert ours.version_tags(model, "2")["modeldeploy.io/test"] == "yes"
    mlmodel = yaml.safe_load(ours.read_mlmodel(model, "2") or "")
    assert "python_function" in mlmodel["flavors"]


@pytest.mark.parametrize(
    "ref",
    [
        ModelRef("it-no-such-model", alias="champion"),
        ModelRef("it-no-such-model", version="1"),
        ModelRef("it-no-such-model"),
    ],
    ids=["alias", "version", "latest"],
)
def test_a_missing_model_is_not_found_not_an_outage(registry: Registry, ref: ModelRef) -> None:
    with pytest.raises(ModelNotFound):
        RegistryClient(registry.uri).resolve(ref)
