"""The CRD's schema uses only OpenAPI keywords the API server knows.

A comma inside an unquoted description of a YAML flow mapping (`{type: integer, description: a,
b}`) silently turns the rest of the sentence into a key; the API server then refuses the whole
CRD, which only an integration test or `make demo` would notice. This finds it in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CRD = Path(__file__).resolve().parents[2] / "crds" / "modeldeploy.io_modeldeployments.yaml"
KEYWORDS = {
    "type", "description", "default", "properties", "items", "required", "enum", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "maxProperties", "additionalProperties", "nullable",
    "x-kubernetes-validations", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip


def unknown_keywords(node: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if not isinstance(node, dict):
        return found
    found += [f"{path or '.'}: {k!r}" for k in node if k not in KEYWORDS]
    for name, child in (node.get("properties") or {}).items():
        found += unknown_keywords(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += unknown_keywords(node[key], f"{path}[]")
    return found


def test_every_schema_node_uses_only_openapi_keywords() -> None:
    crd = yaml.safe_load(CRD.read_text())
    for version in crd["spec"]["versions"]:
        assert unknown_keywords(version["schema"]["openAPIV3Schema"]) == []


def test_the_check_finds_a_sentence_split_by_a_flow_mapping_comma() -> None:
    node = yaml.safe_load("{type: integer, description: ready pods, or the route's weights}")
    assert unknown_keywords({"properties": {"w": node}}) == ['.w: "or the route\'s weights"']
