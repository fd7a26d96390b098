"""Numeric outcomes posted with feedback (revenue, a rating), through the HTTP API of real servers: counted per
version as count / sum / squares under the declared names only, refused per item when undeclared or not a finite
number, and counted once per (token, kind) - a token's label and each of its outcomes may come together or apart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from modelserver.contract_parse import OutcomeTotals, parse_pod_metrics
from modelserver.settings import read_settings

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def _pair(models: ExampleModels, start: Callable[..., RunningServer], tmp_path: Path,
          outcomes: str = "revenue,rating") -> tuple[RunningServer, ...]:
    """Two pods of one rollout (versions 1 and 2, the rollout's key) declaring the same outcomes."""
    key = tmp_path / "key"
    key.write_bytes(b"r" * 32)
    return tuple(start(models.settings("lr.joblib", model_version=v, feedback_key_file=str(key), outcomes=outcomes))
                 for v in "12")


def _fresh_post(server: RunningServer, payload: object) -> requests.Response:
    """A new connection each time, as a system reporting revenue later would."""
    with requests.Session() as session:
        return session.post(server.url + "/v2/models/lr/feedback", json=payload, timeout=10)


def _token(server: RunningServer) -> tuple[str, Any]:
    body = server.infer([ONE_ROW]).json()
    return body["parameters"]["prediction_token"], body["outputs"][0]["data"][0]


def _outcomes(server: RunningServer, version: str) -> dict[str, OutcomeTotals]:
    found = parse_pod_metrics(server.get("/metrics").text).model("lr", version)
    return dict(found.outcomes) if found is not None else {}


def test_outcomes_count_for_the_predicting_version_as_count_sum_and_squares(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    stable, canary = _pair(models, start_server, tmp_path)
    # Declared outcomes show as 0 before any arrives: no outcome yet is not missing data
    assert _outcomes(stable, "1") == {"revenue": OutcomeTotals(), "rating": OutcomeTotals()}
    first, predicted = _token(stable)
    second, _ = _token(stable)
    answer = _fresh_post(canary, {"feedback": [{"token": first, "label": predicted, "outcome": {"revenue": 12.5}},
                                               {"token": second, "outcome": {"revenue": -2, "rating": 4}}]})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["correct"], answer.json()["outcomes"]) == (1, 3)
    # Counted by the version-2 server, under version 1 (the token's), refunds (negative revenue) included
    assert _outcomes(canary, "1") == {"revenue": OutcomeTotals(2, 10.5, 12.5 ** 2 + 4),
                                      "rating": OutcomeTotals(1, 4, 16)}
    assert _outcomes(canary, "2") == {"revenue": OutcomeTotals(), "rating": OutcomeTotals()}
    assert _outcomes(stable, "1") == {"revenue": OutcomeTotals(), "rating": OutcomeTotals()}


def test_a_label_and_an_outcome_of_one_token_count_once_each_together_or_apart(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    stable, _canary = _pair(models, start_server, tmp_path)
    token, predicted = _token(stable)
    assert _fresh_post(stable, {"token": token, "label": predicted}).status_code == 200
    # The label was counted; the outcome of the same token has not been: it counts, once
    assert _fresh_post(stable, {"token": token, "outcome": {"revenue": 3}}).json()["outcomes"] == 1
    replayed = _fresh_post(stable, {"token": token, "outcome": {"revenue": 3}})
    assert replayed.status_code == 409 and replayed.json()["refused"] == {"0": "replayed"}
    # Each name is its own kind: a rating arriving later from another system counts too
    assert _fresh_post(stable, {"token": token, "outcome": {"rating": 5}}).status_code == 200
    again = _fresh_post(stable, {"token": token, "label": predicted})
    assert again.status_code == 409 and again.json()["refused"] == {"0": "replayed"}
    # The same outcome twice in one request is a replay as well
    other, _ = _token(stable)
    twice = _fresh_post(stable, [{"token": other, "outcome": {"revenue": 1}}, {"token": other, "label": predicted,
                                                                             "outcome": {"revenue": 1}}])
    assert twice.status_code == 409 and twice.json()["refused"] == {"1": "replayed"}
    assert _outcomes(stable, "1")["revenue"] == OutcomeTotals(1, 3, 9)
    assert _outcomes(stable, "1")["rating"] == OutcomeTotals(1, 5, 25)


def test_an_invalid_label_leaves_the_label_open_while_its_outcome_counts(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    stable, _canary = _pair(models, start_server, tmp_path)
    token, predicted = _token(stable)
    body = _fresh_post(stable, {"token": token, "label": "cat", "outcome": {"revenue": 7}}).json()
    assert (body["invalid"], body["outcomes"]) == (1, 1)
    assert _fresh_post(stable, {"token": token, "label": predicted}).json()["correct"] == 1


@pytest.mark.parametrize(("outcome", "reason"), [
    ({"revnue": 3}, "undeclared_outcome"),  # a typo must not become a series of its own
    ({"revenue": "3"}, "invalid_outcome"),
    ({"revenue": True}, "invalid_outcome"),
    ({"revenue": None}, "invalid_outcome"),
    ({"revenue": 1e200}, "invalid_outcome"),  # its square is not finite
])
def test_an_undeclared_name_or_a_value_that_is_not_a_finite_number_refuses_the_request_naming_the_item(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path,
        outcome: dict[str, Any], reason: str) -> None:
    stable, _canary = _pair(models, start_server, tmp_path)
    good, predicted = _token(stable)
    bad, _ = _token(stable)
    answer = _fresh_post(stable, [{"token": good, "label": predicted, "outcome": {"revenue": 1}},
                                  {"token": bad, "outcome": outcome}])
    assert answer.status_code == 422 and answer.json()["refused"] == {"1": reason}, answer.text
    text = stable.get("/metrics").text
    assert f'modelserver_feedback_refused_total{{model="lr",reason="{reason}",version="1"}} 1.0' in text
    assert "revnue" not in text  # label values come from the declared names only
    # Nothing of the request counted: the good item goes through when sent again
    assert _outcomes(stable, "1")["revenue"] == OutcomeTotals()
    assert _fresh_post(stable, {"token": good, "label": predicted, "outcome": {"revenue": 1}}).status_code == 200


def test_a_server_declaring_no_outcomes_refuses_every_outcome(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    (alone,) = (start_server(models.settings("lr.joblib")),)
    token, _ = _token(alone)
    answer = _fresh_post(alone, {"token": token, "outcome": {"revenue": 1}})
    assert answer.status_code == 422 and answer.json()["refused"] == {"0": "undeclared_outcome"}
    assert "modelserver_outcome_count{" not in alone.get("/metrics").text


def test_outcome_names_written_into_the_mounted_configuration_are_counted_from_then_on_and_stay(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    # A stable pod started before any A/B experiment: MODELSERVER_OUTCOMES empty, the rollout's file mounted
    config = tmp_path / "mirror.yaml"
    config.write_text("percent: 0\n")
    server = start_server(models.settings("lr.joblib", mirror_config_file=str(config)))
    first, _ = _token(server)
    assert _fresh_post(server, {"token": first, "outcome": {"revenue": 2}}).json()["refused"] == {
        "0": "undeclared_outcome"}
    # When the operator writes the experiment's outcome into the file (the kubelet swaps it in)
    config.write_text("percent: 0\noutcomes: [revenue]\n")
    _wait_for(lambda: "revenue" in _outcomes(server, "1"))
    # Then the series shows at 0 and outcomes count, with no restart
    assert _outcomes(server, "1") == {"revenue": OutcomeTotals()}
    assert _fresh_post(server, {"token": first, "outcome": {"revenue": 2}}).status_code == 200
    # And a later file without it (the experiment over) keeps it declared: clients posting it are not refused
    config.write_text("percent: 0\n")
    second, _ = _token(server)
    # (the third read of the file: at start, with the outcome, without it)
    _wait_for(lambda: 'modelserver_mirror_config_loads_total{model="lr",outcome="off",version="1"} 3.0'
              in server.get("/metrics").text)
    assert _fresh_post(server, {"token": second, "outcome": {"revenue": 3}}).status_code == 200
    assert _outcomes(server, "1") == {"revenue": OutcomeTotals(2, 5, 13)}


def test_a_sticky_split_in_the_mounted_configuration_puts_each_new_user_on_the_answering_version(
        models: ExampleModels, start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    config = tmp_path / "mirror.yaml"
    config.write_text("percent: 0\n")
    server = start_server(models.settings("lr.joblib", model_version="2", mirror_config_file=str(config)))
    body = {"inputs": [{"name": "x", "shape": [1, len(ONE_ROW)], "datatype": "FP64", "data": ONE_ROW}]}

    def answer(cookie: str | None = None) -> requests.Response:
        with requests.Session() as session:
            headers = {"Cookie": cookie} if cookie else {}
            return session.post(server.url + "/v2/models/lr/infer", json=body, headers=headers, timeout=10)

    assert "Set-Cookie" not in answer().headers, "no sticky split configured: no cookie"
    config.write_text("percent: 0\noutcomes: [revenue]\nsticky: {cookie: ab-arm, maxAge: 3600}\n")
    _wait_for(lambda: "Set-Cookie" in answer().headers)
    cookie = answer().headers["Set-Cookie"]
    assert cookie.startswith("ab-arm=2;") and "Max-Age=3600" in cookie and "HttpOnly" in cookie, cookie
    assert "Path=/" in cookie and "SameSite=Lax" in cookie, cookie
    # A user already on this version's arm gets no new cookie; one whose cookie names another version is put here
    assert "Set-Cookie" not in answer("other=1; ab-arm=2").headers
    assert answer("ab-arm=1").headers["Set-Cookie"].startswith("ab-arm=2;")
    # A refused request assigns no arm
    refused = server.post("/v2/models/lr/infer", {"inputs": []})
    assert refused.status_code == 400 and "Set-Cookie" not in refused.headers


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within 10 s"
        time.sleep(0.1)


@pytest.mark.parametrize("item", [
    {"id": "a", "outcome": {"revenue": 1}},  # an id names no version: outcomes travel with tokens
    {"id": "a", "label": 1, "outcome": {"revenue": 1}},
    {"token": "t.m", "outcome": {}},
    {"token": "t.m", "outcome": [1]},
    {"token": "t.m", "outcome": {f"o{i}": 1 for i in range(17)}},
    {"token": "t.m"},
])
def test_a_malformed_outcome_item_is_a_400(lr_server: RunningServer, item: dict[str, Any]) -> None:
    assert lr_server.post("/v2/models/lr/feedback", item).status_code == 400


@pytest.mark.parametrize("names", ["Revenue", "re venue", "revenue,revenue", ",".join(f"o{i}" for i in range(17))])
def test_bad_outcome_names_stop_the_server_at_start(names: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        read_settings([], env={"MODELSERVER_OUTCOMES": names})
    assert stopped.value.code == 2


def test_the_module_examples_hold() -> None:
    import doctest

    from modelserver import dataplane, feedback, settings
    for module in (feedback, dataplane, settings):
        assert doctest.testmod(module).failed == 0, module.__name__
