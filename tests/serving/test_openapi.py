"""The OpenAPI document describes exactly the routes the server has, and the server serves it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis

from modelserver.dataplane import DataPlane
from modelserver.metrics import ServerMetrics
from modelserver.openapi import OPENAPI_PATH, openapi_document
from modelserver.server import build_app
from modelserver.settings import Settings

from .conftest import RunningServer

pytestmark = pytest.mark.unit

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _app_routes() -> set[tuple[str, str]]:
    """(METHOD, path template) of every route; aiohttp's automatic HEAD of a GET is left out (see below)."""
    settings = Settings(model_name="iris", model_version="2")
    app = build_app(DataPlane(settings, ServerMetrics("iris", "2")))
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    heads = {(m, p) for m, p in routes if m == "HEAD"}
    assert {("GET", p) for _, p in heads} <= routes, "a HEAD route without its GET"
    return routes - heads


def _documented(doc: dict[str, object]) -> set[tuple[str, str]]:
    paths = doc["paths"]
    assert isinstance(paths, dict)
    return {(method.upper(), path) for path, item in paths.items() for method in item if method in HTTP_METHODS}


def test_every_route_is_documented_and_every_documented_operation_is_a_route() -> None:
    routes, documented = _app_routes(), _documented(openapi_document("iris", "2"))
    assert routes - documented == set(), "routes the OpenAPI document does not describe"
    assert documented - routes == set(), "operations in the OpenAPI document that the server does not have"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


@pytest.mark.parametrize("n_features", [None, 20])
def test_the_document_is_valid_openapi_with_every_reference_resolved(n_features: int | None) -> None:
    doc = openapi_document("iris", "2", n_features)
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()  # against the OpenAPI 3.0 meta-schema
    assert len([result.ok() for result in schema.get_all_operations()]) == len(_documented(doc))
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(set(ids)) == len(ids) == len(_documented(doc)), "operationIds must be unique"
    refs = set(_refs(doc))
    assert len(refs) > 20
    for ref in refs:
        _resolve(doc, ref)


def test_the_server_serves_its_document_naming_its_own_model(lr_server: RunningServer) -> None:
    answer = lr_server.get(OPENAPI_PATH)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    doc = answer.json()
    assert doc == openapi_document("lr", "1", 20)
    assert doc["components"]["parameters"]["name"]["schema"]["enum"] == ["lr"]


def _pointer(document: Any, pointer: str) -> Any:
    for part in pointer.lstrip("/").split("/"):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


@pytest.mark.parametrize(("example", "rows"), [("one_row", 1), ("two_rows_nested_with_proba", 2)])
def test_the_documented_link_from_a_prediction_to_its_feedback_scores_it(lr_server: RunningServer, example: str,
                                                                         rows: int) -> None:
    # What a client (or a stateful fuzzer) following the document's link does: send the answer's id and
    # predicted labels to the feedback operation the link names. Every row must be scored, none invalid.
    doc = lr_server.get(OPENAPI_PATH).json()
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    answer = lr_server.post("/v2/models/lr/infer",
                            infer["requestBody"]["content"]["application/json"]["examples"][example]["value"])
    assert answer.status_code == 200
    link = infer["responses"]["200"]["links"]["feedback"]
    (path,) = [p for p, item in doc["paths"].items() if item.get("post", {}).get("operationId") == link["operationId"]]
    assert link["parameters"] == {"name": "$request.path.name"}
    body = {key: _pointer(answer.json(), expression.removeprefix("$response.body#"))
            for key, expression in link["requestBody"].items()}
    tally = lr_server.post(path.replace("{name}", "lr"), body).json()
    # The labels sent are the model's own predictions, so every row is correct.
    assert (tally["correct"], tally["incorrect"], tally["invalid"], tally["unknown_id"]) == (rows, 0, 0, 0)
