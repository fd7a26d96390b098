"""The OpenAPI document describes exactly the routes the server has, and the server serves it."""

from __future__ import annotations

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


def test_the_document_is_valid_openapi_with_every_reference_resolved() -> None:
    schema = schemathesis.openapi.from_dict(openapi_document("iris", "2"))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(_documented(openapi_document("iris", "2")))
    for operation in operations:
        for status, response in operation.definition.raw["responses"].items():
            assert "description" in response, (operation.label, status)


def test_the_server_serves_its_document_naming_its_own_model(lr_server: RunningServer) -> None:
    answer = lr_server.get(OPENAPI_PATH)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    doc = answer.json()
    assert doc == openapi_document("lr", "1", 20)
    assert doc["components"]["parameters"]["name"]["schema"]["enum"] == ["lr"]
