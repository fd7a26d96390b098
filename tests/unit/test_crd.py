"""The generated CRD is what `kubectl explain` users read: every field described (from the docs tables, the
one place a meaning is written), the committed copies equal to the generator's output, Kubernetes' own
types for env and resources, bounded status lists, no YAML anchors."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.core.status import HISTORY_LIMIT
from modelrollout.crdgen import coretypes
from modelrollout.crdgen.fielddocs import field_descriptions, plain_text
from modelrollout.crdgen.generate import OUTPUTS, ROOT, CrdError, build_schema, property_paths, render

pytestmark = pytest.mark.unit
CRDS = [ROOT / out for out in OUTPUTS]
INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return coretypes.load_openapi()


def schema_of(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema of a field path such as spec.serving.env[].name."""
    node = schema
    for part in path.split("."):
        name, items = part.removesuffix("[]"), part.endswith("[]")
        node = node["properties"][name]
        node = node["items"] if items else node
    return node


@pytest.mark.parametrize("crd", CRDS, ids=["crds", "chart"])
def test_every_field_of_spec_and_status_has_a_description(crd: Path) -> None:
    schema = schema_of(crd)
    paths = {p: s for root in ("spec", "status") for p, s in property_paths(schema["properties"][root], root)}
    assert len(paths) > 350, "env, resources, affinity and volumes are typed, so there are many fields"
    undescribed = [p for p, s in paths.items() if not s.get("description", "").strip()]
    assert not undescribed, undescribed
    assert all(schema["properties"][f]["description"] for f in ("spec", "status", "apiVersion", "kind"))
    assert schema["description"].startswith("ModelRollout ")


def test_the_root_metadata_is_left_as_the_api_server_requires() -> None:
    """The API server refuses a CRD whose root metadata has anything but limits on name (a description too)."""
    assert schema_of(CRDS[0])["properties"]["metadata"] == {"type": "object"}


def test_the_committed_crds_are_the_generators_output(openapi: dict[str, Any]) -> None:
    text = render(openapi=openapi)
    for crd in CRDS:
        assert crd.read_text() == text, f"{crd.relative_to(ROOT)} is out of date or edited by hand: run `make crd`"


def test_descriptions_come_from_the_docs_tables_as_plain_text() -> None:
    spec = schema_of(CRDS[0])["properties"]["spec"]
    assert at(spec, "replicas")["description"].startswith("Serving pods at steady state.")
    assert at(spec, "replicas")["description"].endswith("Default: 1.")
    assert at(spec, "analysis.interval")["description"] == (
        "Time between analysis ticks (scrape, increments, verdicts). Default: 15s.")
    status = schema_of(CRDS[0])["properties"]["status"]
    # One row of the docs describes the field of all three model records.
    assert at(status, "stableModel.uri")["description"] == at(status, "history[].model.uri")["description"]
    ours = field_descriptions((ROOT / "docs" / "modelrollout.md").read_text())
    assert len(ours) > 200 and not [p for p, d in ours.items() if "`" in d], "Markdown is stripped"
    assert "(see Rounding)" in at(spec, "replicas")["description"]
    assert at(spec, "serving.env")["description"] == ours["spec.serving.env"]


def test_plain_text_strips_inline_markdown() -> None:
    assert plain_text(r"`a` \| *b*, **c** and [d](d.md#x)") == "a | b, c and d"
    assert plain_text("ceil(replicas x weight / 100) and 2 * 3") == "ceil(replicas x weight / 100) and 2 * 3"


def test_env_and_resources_are_kubernetes_types() -> None:
    serving = schema_of(CRDS[0])["properties"]["spec"]["properties"]["serving"]
    env = at(serving, "env")
    assert env["maxItems"] == 100 and env["items"]["required"] == ["name"]
    assert set(env["items"]["properties"]) == {"name", "value", "valueFrom"}
    assert {"configMapKeyRef", "secretKeyRef", "fieldRef"} <= set(at(serving, "env[].valueFrom")["properties"])
    resources = at(serving, "resources")
    assert set(resources["properties"]) == {"limits", "requests"}, "claims: podTemplate has no resourceClaims"
    quantity = resources["properties"]["limits"]["additionalProperties"]
    assert {k: quantity[k] for k in INT_OR_STRING} == INT_OR_STRING, "cpu: 1 and cpu: 250m both pass"
    assert re.fullmatch(quantity["pattern"], "250m") and not re.fullmatch(quantity["pattern"], "lots")
    assert resources["default"] == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
    assert "nodeAffinity" in at(serving, "podTemplate.spec.affinity")["properties"]
    assert at(serving, "podTemplate.spec.topologySpreadConstraints[]")["required"] == [
        "maxSkew", "topologyKey", "whenUnsatisfiable"]
    volume = at(serving, "podTemplate.spec.volumes[]")
    assert {"configMap", "secret", "projected", "persistentVolumeClaim"} <= set(volume["properties"])
    assert (volume["required"], volume["properties"]["name"]["maxLength"]) == (["name"], 63)
    assert volume["x-kubernetes-validations"][0]["rule"] == "self.name != 'scratch'"


def test_a_client_side_kubectl_apply_can_store_the_crd() -> None:
    """`kubectl apply` without --server-side keeps the whole object in an annotation of at most 256 KiB."""
    crd = yaml.safe_load(CRDS[0].read_text())
    assert len(json.dumps(crd, separators=(",", ":"))) < 256 * 1024 - 16 * 1024


def test_nothing_is_left_free_form_but_opaque_operator_state() -> None:
    schema = schema_of(CRDS[0])
    nodes = [pair for path, node in property_paths(schema, "")
             for pair in ((path, node), (f"{path}[]", node.get("items", {})))]
    free = sorted(p.lstrip(".") for p, s in nodes if s.get("x-kubernetes-preserve-unknown-fields"))
    assert free == ["status.analysis.engineState", "status.kopf", "status.shadow.state"]


def test_no_kubernetes_default_is_written_into_stored_rollouts() -> None:
    """Go's zero values (`default: ""`) of the core types would be added to every stored rollout."""
    serving = schema_of(CRDS[0])["properties"]["spec"]["properties"]["serving"]
    defaults = [p for p, s in property_paths(serving, "serving") if "default" in s]
    assert defaults == ["serving.port", "serving.resources", "serving.metrics.preset"], defaults


def test_status_lists_are_bounded_and_conditions_are_a_map_by_type() -> None:
    status = schema_of(CRDS[0])["properties"]["status"]
    lists = {p.lstrip("."): s for p, s in property_paths(status, "") if s.get("type") == "array"}
    assert set(lists) == {"conditions", "analysis.results", "analysis.results[].interval", "history",
                          "validation.checks", "shadow.results", "shadow.results[].interval", "shadow.pods",
                          "abTest.interval", "drift.versions",
                          "drift.versions[].features"}
    assert all("maxItems" in s for s in lists.values()), {p: s.get("maxItems") for p, s in lists.items()}
    assert lists["history"]["maxItems"] == HISTORY_LIMIT
    spec = schema_of(CRDS[0])["properties"]["spec"]
    assert lists["analysis.results"]["maxItems"] == at(spec, "analysis.metrics")["maxItems"]
    conditions = lists["conditions"]
    assert (conditions["x-kubernetes-list-type"], conditions["x-kubernetes-list-map-keys"]) == ("map", ["type"])
    assert "type" in conditions["items"]["required"]


def test_no_yaml_anchors_and_rollouts_are_in_the_all_category() -> None:
    for crd in CRDS:
        events = list(yaml.parse(crd.read_text()))
        assert not any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in events)
    assert yaml.safe_load(CRDS[0].read_text())["spec"]["names"]["categories"] == ["all", "modelrollout"]


def test_the_kubernetes_version_is_the_local_clusters() -> None:
    for script in ("build-k8s.sh", "k8s-openapi.sh"):
        assert f"K8S_VERSION=${{K8S_VERSION:-{coretypes.K8S_VERSION}}}" in (ROOT / "hack" / script).read_text()


SOURCE = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
    "spec": {"type": "object", "properties": {"size": {"type": "integer"},
                                              "env": {"$ref": "io.k8s.api.core.v1.EnvVar"}}},
    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}
DOCS = """# Thing reference

A Thing does things. It is small.

| Field | Type | Default | Meaning |
|---|---|---|---|
| `spec` | object | required | What is wanted. |
| `spec.size` | integer | `3` | How big. |
| `spec.env` | EnvVar | none | One variable. |

| Field | Meaning |
|---|---|
| `status` | What is. |
| `status.phase` | Where it stands. |
"""


def test_the_generator_fills_descriptions_and_inlines_types(openapi: dict[str, Any]) -> None:
    schema = build_schema(SOURCE, DOCS, openapi)
    assert schema["description"] == "A Thing does things."
    spec = schema["properties"]["spec"]
    assert spec["properties"]["size"] == {"description": "How big. Default: 3.", "type": "integer"}
    assert spec["properties"]["env"]["description"] == "One variable."
    assert spec["properties"]["env"]["properties"]["name"]["description"].startswith("Name of the environment")
    assert "Kind is a string value" in schema["properties"]["kind"]["description"]


@pytest.mark.parametrize(("case", "docs", "source_change", "error"), [
    ("a field the docs do not describe", DOCS.replace("| `spec.size` | integer | `3` | How big. |\n", ""), None,
     "describe these fields in a table of docs/modelrollout.md: ['spec.size']"),
    ("a docs row for a field the schema lacks", DOCS + "| `status.gone` | Removed. |\n", None,
     "docs/modelrollout.md describes fields the schema does not have: ['status.gone']"),
    ("a description written in the source", DOCS, ("size", {"type": "integer", "description": "Big."}),
     "spec.size: descriptions come from docs/modelrollout.md"),
])
def test_the_generator_refuses_sources_that_disagree(
        openapi: dict[str, Any], case: str, docs: str, source_change: tuple[str, Any] | None, error: str) -> None:
    source = copy.deepcopy(SOURCE)
    if source_change:
        source["properties"]["spec"]["properties"][source_change[0]] = source_change[1]
    with pytest.raises(CrdError, match=re.escape(error)):
        build_schema(source, docs, openapi)


def test_one_field_described_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("spec.size is described by two rows")):
        field_descriptions(DOCS + "| `spec.size` | integer | | Twice. |\n")


def test_the_operator_never_imports_the_generator() -> None:
    """crdgen is a development tool: the operator's image runs without it being loaded."""
    code = ("import sys, modelrollout.main, modelrollout.handlers, modelrollout.cli\n"
            "print([m for m in sys.modules if m.startswith('modelrollout.crdgen')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout
