"""Feedback with prediction tokens through the HTTP API: a label posted to another server of the same rollout
(same key file, another version) counts for the version that predicted; forged and replayed ones are 4xx."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from modelserver.contract_parse import parse_pod_metrics

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def _key(tmp_path: Path, name: str, byte: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(byte * 32)
    return str(path)


def _pair(models: ExampleModels, start: Callable[..., RunningServer], key_file: str) -> tuple[RunningServer, ...]:
    """Two pods of one rollout: versions 1 and 2 of model lr, sharing the rollout's key."""
    return tuple(start(models.settings("lr.joblib", model_version=v, feedback_key_file=key_file)) for v in "12")


def _fresh_post(url: str, payload: object) -> requests.Response:
    """A new connection each time, as a batch job sending labels later would."""
    with requests.Session() as session:
        return session.post(url, json=payload, timeout=10)


def _feedback(server: RunningServer, version: str) -> tuple[float, float]:
    found = parse_pod_metrics(server.get("/metrics").text).model("lr", version)
    return (found.feedback_correct, found.feedback_incorrect) if found is not None else (0.0, 0.0)


def test_a_label_sent_to_another_version_s_server_counts_for_the_predicting_version(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    stable, canary = _pair(models, start_server, _key(tmp_path, "key", b"r"))
    answer = stable.infer([ONE_ROW])
    body = answer.json()
    token = body["parameters"]["prediction_token"]
    assert answer.headers["X-Prediction-Token"] == token
    predicted = body["outputs"][0]["data"][0]
    v1 = stable.post("/v1/models/lr:predict", {"instances": [ONE_ROW, ONE_ROW]}).json()
    wrong = 1 - predicted
    result = _fresh_post(canary.url + "/v2/models/lr/feedback", {"feedback": [
        {"token": token, "label": predicted}, {"token": v1["prediction_token"], "label": [predicted, wrong]}]})
    assert result.status_code == 200, result.text
    assert (result.json()["correct"], result.json()["incorrect"]) == (2, 1)
    assert _feedback(canary, "1") == (2.0, 1.0)  # version 1's labels, counted by a version-2 server
    assert _feedback(canary, "2") == (0.0, 0.0)
    assert _feedback(stable, "1") == (0.0, 0.0)


def test_forged_replayed_and_foreign_tokens_are_refused_with_4xx_and_counted(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    stable, canary = _pair(models, start_server, _key(tmp_path, "key", b"r"))
    other_rollout = start_server(models.settings("lr.joblib", model_version="1",
                                                 feedback_key_file=_key(tmp_path, "other", b"o")))
    token = stable.infer([ONE_ROW]).json()["parameters"]["prediction_token"]
    feedback = canary.url + "/v2/models/lr/feedback"
    payload, mac = token.split(".")
    forged = _fresh_post(feedback, {"token": f"{payload}.{mac[:-4]}AAAA", "label": 1})
    assert forged.status_code == 403 and forged.json()["refused"] == {"0": "bad_signature"}
    foreign = other_rollout.infer([ONE_ROW]).json()["parameters"]["prediction_token"]
    assert _fresh_post(feedback, {"token": foreign, "label": 1}).status_code == 403
    assert _fresh_post(feedback, {"token": "garbage", "label": 1}).json()["refused"] == {"0": "malformed"}
    assert _fresh_post(feedback, {"token": token, "label": 1}).status_code == 200
    replayed = _fresh_post(feedback, {"token": token, "label": 1})
    assert replayed.status_code == 409 and replayed.json()["refused"] == {"0": "replayed"}
    # The documented limit: replay detection is per pod, another pod of the rollout counts it once more.
    assert _fresh_post(stable.url + "/v2/models/lr/feedback", {"token": token, "label": 1}).status_code == 200
    metrics = canary.get("/metrics").text
    assert 'modelserver_feedback_refused_total{model="lr",reason="bad_signature",version="2"} 2.0' in metrics
    assert 'reason="replayed",version="2"} 1.0' in metrics
    assert sum(_feedback(canary, "1")) == 1.0  # only the one accepted label


def test_without_a_key_file_tokens_verify_on_their_own_server_only(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    alone, other = (start_server(models.settings("lr.joblib")) for _ in range(2))
    token = alone.infer([ONE_ROW]).json()["parameters"]["prediction_token"]
    assert other.post("/v2/models/lr/feedback", {"token": token, "label": 1}).status_code == 403
    assert alone.post("/v2/models/lr/feedback", {"token": token, "label": 1}).status_code == 200
