"""Fuzzing: schemathesis sends generated requests to a real `python -m modelserver` process serving a real model.

The requests come from the server's own OpenAPI document (GET /openapi.json): valid ones and ones that
violate it (wrong types, missing fields, out-of-range numbers, ids too long, unexpected methods, garbage
binary bodies). Every answer must be a non-5xx, with a documented status, content type, headers and body;
anything the document forbids must be refused with a 4xx. One classifier (skops, predict_proba, the fast
path) and one regressor (joblib) are fuzzed. Bounded: a fixed number of examples per operation and a
fixed seed (MODELSERVER_FUZZ_SEED picks another; a failure prints the request that reproduces it).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from schemathesis import Case

from modelserver.contract_parse import parse_pod_metrics
from modelserver.openapi import OPENAPI_PATH, openapi_document

from .conftest import ExampleModels, ServerProcess

pytestmark = pytest.mark.unit

SEED = int(os.environ.get("MODELSERVER_FUZZ_SEED", "20261207"))
MAX_EXAMPLES = 20  # per operation and generation mode in the fuzzing phase: about a minute for both servers here
# What must hold for every answer. positive_data_acceptance is left out on purpose: JSON Schema cannot say
# that `data` holds rows x n_features values, so a request valid by the document can still be a 400.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
          "unsupported_method", "missing_required_header")
# Both servers serve their model under one name, so one document (and one schema) describes both.
MODEL_NAME, MODEL_VERSION, N_FEATURES = "fuzzed", "7", 20
DOCUMENTED = openapi_document(MODEL_NAME, MODEL_VERSION, N_FEATURES)
CONFIG = {
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
    "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    "request-timeout": 10,
}


def _env(models: ExampleModels, file: str) -> dict[str, str]:
    entry = models.entry(file)
    return {"MODEL_NAME": MODEL_NAME, "MODEL_VERSION": MODEL_VERSION,
            "MODEL_URI": str(models.directory / file), "MODEL_DIGEST": entry["digest"],
            "MODEL_ALLOW_PICKLE": str(entry["format"] != "skops").lower(), "HOST": "127.0.0.1", "PORT": "0",
            "MODELSERVER_DRAIN_DELAY_S": "0", "MODELSERVER_BODY_READ_TIMEOUT_S": "5"}


@pytest.fixture(scope="module", params=["lr.skops", "ridge.joblib"])
def fuzzed_server(request: pytest.FixtureRequest, models: ExampleModels,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(_env(models, request.param), tmp_path_factory.mktemp("fuzz") / "server.log")
    try:
        # What is fuzzed is what the server publishes.
        assert requests.get(server.url + OPENAPI_PATH, timeout=10).json() == DOCUMENTED
        yield server
        if _runs_every_fuzz_test_on(request, request.param):
            _assert_the_fuzzing_reached_the_model(server.url)
    finally:
        exit_code = server.stop()
    assert exit_code == 0, server.log()
    # A 5xx fails the checks already; this catches an unhandled error that was answered some other way.
    assert "Traceback" not in server.log(), server.log()


def _runs_every_fuzz_test_on(request: pytest.FixtureRequest, server_id: str) -> bool:
    """Whether this session runs all of this module's tests against that server (not a -k selection of them)."""
    every_answer = test_every_answer_to_generated_requests_is_documented_and_never_a_5xx.__name__
    selected = [item for item in request.session.items
                if item.name.startswith(every_answer) and item.name.endswith(f"[{server_id}]")]
    return len(selected) == len(list(schema.get_all_operations()))


def _assert_the_fuzzing_reached_the_model(url: str) -> None:
    """Not only 404s and 405s: the generated requests were predicted, refused as bad input and fed back."""
    pod = parse_pod_metrics(requests.get(url + "/metrics", timeout=10).text)
    served = pod.model(MODEL_NAME, MODEL_VERSION)
    assert served is not None
    by_code = dict(served.requests_by_code)
    assert served.errors == 0, by_code
    assert by_code.get("200", 0) >= 5 and by_code.get("400", 0) >= 100, by_code
    assert pod.unknown_model_requests > 0
    assert served.feedback_unknown_ids > 0


# A copy: schemathesis may write into the dict it is given (its stateful mode adds inferred links).
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENTED), config=schemathesis.Config.from_dict(CONFIG))


@schema.parametrize()
def test_every_answer_to_generated_requests_is_documented_and_never_a_5xx(case: Case,
                                                                         fuzzed_server: ServerProcess) -> None:
    case.call_and_validate(base_url=fuzzed_server.url)

