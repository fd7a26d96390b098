"""Fault injection is the tests' wrapper's, not the server's: the user's server has no such knob."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from modelserver.contract_parse import parse_pod_metrics
from modelserver_testing import Faults, read_faults
from modelserver_testing.__main__ import main as wrapper_main

from .conftest import ONE_ROW, ExampleModels, RunningServer, ServerProcess

pytestmark = pytest.mark.unit


def _env(models: ExampleModels, **extra: str) -> dict[str, str]:
    entry = models.entry("lr.skops")
    return {"MODEL_NAME": "lr", "MODEL_URI": str(models.directory / "lr.skops"), "MODEL_DIGEST": entry["digest"],
            "HOST": "127.0.0.1", "PORT": "0", "MODELSERVER_DRAIN_DELAY_S": "0", **extra}


def _infer(url: str) -> int:
    body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": ONE_ROW}]}
    return requests.post(url + "/v2/models/lr/infer", json=body, timeout=10).status_code


def test_the_users_server_shows_and_obeys_no_fault_injection(models: ExampleModels, tmp_path: Path) -> None:
    help_text = subprocess.run([sys.executable, "-m", "modelserver", "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "MODELSERVER_MAX_ROWS" in help_text and "chaos" not in help_text.lower()
    server = ServerProcess(_env(models, MODELSERVER_CHAOS_ERROR_RATE="1"), tmp_path / "server.log")
    try:
        assert [_infer(server.url) for _ in range(3)] == [200] * 3
    finally:
        assert server.stop() == 0


def test_the_testing_wrapper_fails_inferences_as_model_errors(models: ExampleModels, tmp_path: Path) -> None:
    server = ServerProcess(_env(models, MODELSERVER_CHAOS_ERROR_RATE="1"), tmp_path / "server.log",
                           module="modelserver_testing")
    try:
        assert [_infer(server.url) for _ in range(3)] == [500] * 3
        m = parse_pod_metrics(requests.get(server.url + "/metrics", timeout=10).text).model("lr", "1")
        assert m is not None and (m.requests, m.errors, m.client_errors) == (3, 3, 0)
        assert "FAULT INJECTION ON (testing only)" in server.log()
    finally:
        assert server.stop() == 0


def test_a_hanging_metrics_endpoint_leaves_inference_answering(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib", shutdown_timeout_s=0.5), faults=Faults(metrics_hang=True))
    assert server.infer([ONE_ROW]).status_code == 200
    with pytest.raises(requests.Timeout):
        requests.get(server.url + "/metrics", timeout=1)


def test_a_seeded_error_rate_fails_the_same_share_every_run(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    runs = []
    for _ in range(2):
        server = start_server(models.settings("lr.joblib"), faults=Faults(error_rate=0.5, seed=7))
        runs.append([server.infer([ONE_ROW]).status_code for _ in range(40)])
    assert runs[0] == runs[1] and 10 <= runs[0].count(500) <= 30 and set(runs[0]) == {200, 500}


@pytest.mark.parametrize("env", [{"MODELSERVER_CHAOS_ERROR_RATE": "2"}, {"MODELSERVER_CHAOS_ERROR_RATE": "lots"},
                                 {"MODELSERVER_CHAOS_LATENCY_MS": "-1"}, {"MODELSERVER_CHAOS_METRICS_HANG": "maybe"},
                                 {"MODELSERVER_CHAOS_SEED": "x"}])
def test_bad_fault_values_stop_the_wrapper_with_a_message(env: dict[str, str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="MODELSERVER_CHAOS_"):
        read_faults(env)
    assert wrapper_main([], env=env) == 2
    assert "MODELSERVER_CHAOS_" in capsys.readouterr().err
