"""The CRD's schema is made of schema keywords only. A flow mapping in YAML (`{type: integer,
description: a, b}`) splits an unquoted description at its comma into a second key; the API
server then refuses the whole CRD ("field not declared in schema") and nothing installs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CRDS = sorted((REPO / "crds").glob("*.yaml"))
# JSONSchemaProps fields (apiextensions.k8s.io/v1) a structural schema may use.
KEYWORDS = frozenset(
    {
        "type", "format", "description", "title", "default", "enum", "nullable", "example",
        "properties", "items", "additionalProperties", "required", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
        "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "multipleOf",
        "allOf", "anyOf", "oneOf", "not", "x-kubernetes-validations",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource", "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
    }
)  # fmt: skip


def schemas(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for key, prop in (node.get("properties") or {}).items():
        yield from schemas(prop, f"{path}.{key}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), Mapping):
            yield from schemas(node[key], f"{path}.{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(node.get(key) or ()):
            yield from schemas(sub, f"{path}.{key}[{i}]")


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_every_schema_node_holds_only_schema_keywords(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        for where, node in schemas(root, version["name"]):
            unknown = sorted(set(node) - KEYWORDS)
            assert not unknown, f"{path.name} {where}: not schema keywords: {unknown}"
