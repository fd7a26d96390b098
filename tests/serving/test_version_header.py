"""Every inference answer names the serving version in a header, failures included."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelserver_testing import Faults
from tests.serving.conftest import ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def test_success_client_error_and_server_error_all_carry_the_version(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib", model_version="7"), faults=Faults(error_rate=1.0))
    failed = server.infer([[0.0] * 20])
    assert failed.status_code == 500 and failed.headers["X-Model-Version"] == "7"
    bad = server.infer([[0.0] * 3])
    assert bad.status_code == 400 and bad.headers["X-Model-Version"] == "7"
    healthy = start_server(models.settings("lr.joblib", model_version="8"))
    ok = healthy.infer([[0.0] * 20])
    assert ok.status_code == 200 and ok.headers["X-Model-Version"] == "8" == ok.json()["model_version"]
