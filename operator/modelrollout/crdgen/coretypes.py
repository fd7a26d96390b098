"""Kubernetes' own schemas (core/v1 EnvVar, ResourceRequirements, ...) inlined as structural CRD schemas.

A CRD cannot `$ref` another schema, so the types are copied from the OpenAPI v3 document the Kubernetes
module publishes (api/openapi-spec/v3/api__v1_openapi.json), the same one the API server serves for pods.
What a CRD schema cannot carry is left out: strategic-merge-patch hints, unions, and the Go defaults
(`default: ""`), which the API server would otherwise write into stored rollouts. Quantities and
IntOrString become int-or-string as controller-gen writes them, so `cpu: 1` and `cpu: 250m` both pass.

>>> spec = {"components": {"schemas": {
...     "T": {"type": "object", "required": ["n"], "properties": {
...         "n": {"type": "string", "default": "", "description": "A name."},
...         "q": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}],
...               "description": "A count or a percentage."}}}}}}
>>> inline_type("T", spec)["properties"]["n"]
{'description': 'A name.', 'type': 'string'}
>>> inline_type("T", spec)["properties"]["q"]
{'description': 'A count or a percentage.', 'anyOf': [{'type': 'integer'}, {'type': 'string'}], \
'x-kubernetes-int-or-string': True}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# The Kubernetes release the local cluster runs (K8S_VERSION of hack/build-k8s.sh, which downloads it).
K8S_VERSION = "v1.36.3"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
# controller-gen's pattern for a Quantity written as a string.
QUANTITY_PATTERN = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
                    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
# Keys a CRD's structural schema accepts, in the order they are written out.
_KEPT = ("description", "type", "format", "enum", "required", "x-kubernetes-list-type",
         "x-kubernetes-list-map-keys", "x-kubernetes-map-type")
_FORMATS = {"int32", "int64", "double", "float", "byte", "date-time"}
Schema = dict[str, Any]


def openapi_path() -> Path:
    """Where `go mod download` puts the document: $MODELROLLOUT_K8S_OPENAPI, else the Go module cache."""
    if explicit := os.environ.get("MODELROLLOUT_K8S_OPENAPI"):
        return Path(explicit)
    cache = os.environ.get("GOMODCACHE") or str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "pkg" / "mod")
    return Path(cache) / "k8s.io" / f"kubernetes@{K8S_VERSION}" / "api" / "openapi-spec" / "v3" / "api__v1_openapi.json"


def load_openapi(path: Path | None = None) -> dict[str, Any]:
    path = path or openapi_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: `make k8s-openapi` downloads the Kubernetes module holding it")
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def inline_type(name: str, openapi: dict[str, Any]) -> Schema:
    """The component schema `name` (e.g. io.k8s.api.core.v1.EnvVar) with every reference inlined."""
    return _structural(openapi["components"]["schemas"][name], openapi["components"]["schemas"], (name,))


def _ref_name(schema: Schema) -> str | None:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    all_of = schema.get("allOf", [])
    if len(all_of) == 1 and "$ref" in all_of[0]:
        return str(all_of[0]["$ref"]).rsplit("/", 1)[1]
    return None


def _int_or_string(description: str | None, *, quantity: bool) -> Schema:
    out: Schema = {"description": description} if description else {}
    out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if quantity:
        out["pattern"] = QUANTITY_PATTERN
    out["x-kubernetes-int-or-string"] = True
    return out


def _structural(schema: Schema, schemas: dict[str, Schema], seen: tuple[str, ...]) -> Schema:
    ref = _ref_name(schema)
    if ref in (QUANTITY, INT_OR_STRING):
        return _int_or_string(schema.get("description"), quantity=ref == QUANTITY)
    if ref is not None:
        if ref in seen:
            raise ValueError(f"{' -> '.join((*seen, ref))}: a recursive type cannot be inlined")
        out = _structural(schemas[ref], schemas, (*seen, ref))
        if schema.get("description"):  # the field's own description says more than its type's
            out = {"description": schema["description"], **{k: v for k, v in out.items() if k != "description"}}
        return out
    out = {k: schema[k] for k in _KEPT if k in schema and (k != "format" or schema[k] in _FORMATS)}
    if "properties" in schema:
        out["properties"] = {k: _structural(v, schemas, seen) for k, v in schema["properties"].items()}
    if "items" in schema:
        out["items"] = _structural(schema["items"], schemas, seen)
        _keep_list_map_key_defaults(out, schema["items"], schemas)
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(schema["additionalProperties"], schemas, seen)
    return out


def _keep_list_map_key_defaults(out: Schema, items: Schema, schemas: dict[str, Schema]) -> None:
    """A list-map key must be required or defaulted (apiextensions validation): keep those defaults."""
    ref = _ref_name(items)
    source = schemas[ref] if ref else items
    for key in out.get("x-kubernetes-list-map-keys", []):
        if key not in out["items"].get("required", []) and "default" in source["properties"][key]:
            out["items"]["properties"][key]["default"] = source["properties"][key]["default"]
