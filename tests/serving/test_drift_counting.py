"""Drift counting: the server counts live inputs into its model's reference bins, exports them with the reference
through the contract, and serves a model without a usable reference all the same, saying why nothing is counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserver import driftref
from modelserver.contract_parse import DriftMetrics, parse_drift_metrics, parse_pod_metrics

from .conftest import ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def _drift(server: RunningServer, name: str = "lr") -> DriftMetrics:
    found = parse_drift_metrics(server.get("/metrics").text).get((name, "1"))
    assert found is not None, "no drift series for the model"
    return found


def _bins(reference: driftref.DriftReference, rows: list[list[float]]) -> dict[tuple[str, int], float]:
    """The expected counts by the one bin rule (driftref.bin_index), row by row."""
    expected = {(f.name, b): 0.0 for f in reference.features for b in range(f.bins)}
    for row in rows:
        for feature, value in zip(reference.features, row, strict=True):
            expected[feature.name, driftref.bin_index(feature.edges, value)] += 1
    return expected


def test_live_inputs_are_counted_into_the_reference_bins_beside_the_model(models: ExampleModels,
                                                                          lr_server: RunningServer) -> None:
    reference = driftref.parse((models.directory / "lr.drift.json").read_text())
    before = _drift(lr_server)
    assert before.state == "loaded"
    assert set(before.live.values()) == {0.0}, "every bin is exported from the start"
    assert dict(before.reference) == {(f.name, b): float(f.counts[b]) for f in reference.features
                                      for b in range(f.bins)}
    rows, _ = models.holdout()
    # One request of many rows and single-row ones: both paths count every row once.
    assert lr_server.infer(rows[:100]).status_code == 200
    for row in rows[100:110]:
        assert lr_server.infer([row]).status_code == 200
    assert dict(_drift(lr_server).live) == _bins(reference, rows[:110])
    # The analysis parser keeps reading the same page.
    m = parse_pod_metrics(lr_server.get("/metrics").text).model("lr", "1")
    assert m is not None and m.rows_predicted == 110


def test_a_refused_request_counts_nothing(lr_server: RunningServer) -> None:
    assert lr_server.infer([[0.0] * 3]).status_code == 400
    assert set(_drift(lr_server).live.values()) == {0.0}


def test_model_without_a_reference_is_served_and_says_missing(models: ExampleModels, tmp_path: Path,
                                                              start_server: Callable[..., RunningServer]) -> None:
    (tmp_path / "solo.joblib").write_bytes((models.directory / "lr.joblib").read_bytes())
    server = start_server(models.settings("lr.joblib", model_uri=str(tmp_path / "solo.joblib")))
    assert server.infer([[0.0] * 20]).status_code == 200
    drift = _drift(server)
    assert drift.state == "missing" and not drift.live and not drift.reference


@pytest.mark.parametrize(("overrides", "state"), [
    ({"drift_reference_digest": "sha256:" + "0" * 64}, "digest_mismatch"),
    ({"drift_max_series": 100}, "too_many_series"),  # 20 features x 10 bins
    ({"drift_reference": "none"}, "disabled"),
])
def test_an_unusable_reference_counts_nothing_and_says_why(models: ExampleModels, overrides: dict[str, object],
                                                           state: str,
                                                           start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib", **overrides))
    assert server.infer([[0.0] * 20]).status_code == 200
    drift = _drift(server)
    assert drift.state == state and not drift.live


def test_the_published_digest_verifies_the_reference(models: ExampleModels,
                                                     start_server: Callable[..., RunningServer]) -> None:
    digest = models.entry("lr.joblib")["drift_reference"]["digest"]
    server = start_server(models.settings("lr.joblib", drift_reference_digest=digest))
    assert _drift(server).state == "loaded"


def test_a_reference_for_another_feature_count_is_invalid(models: ExampleModels, tmp_path: Path,
                                                          start_server: Callable[..., RunningServer]) -> None:
    document = json.loads((models.directory / "lr.drift.json").read_text())
    document["features"] = document["features"][:5]
    (tmp_path / "short.drift.json").write_text(json.dumps(document))
    server = start_server(models.settings("lr.joblib", drift_reference=str(tmp_path / "short.drift.json")))
    assert server.infer([[0.0] * 20]).status_code == 200
    assert _drift(server).state == "invalid"


def test_the_operator_reads_the_window_of_what_the_server_counted(models: ExampleModels,
                                                                   lr_server: RunningServer) -> None:
    """The operator's drift reader (sources/driftcounts.py) against this server: the first look only records a
    reading, the next one's window holds exactly the rows sent in between, in the reference's bins."""
    import asyncio
    from urllib.parse import urlparse

    from modelrollout.kube import PodTarget
    from modelrollout.sources.driftcounts import DriftRequest, DriftWindows

    clock = iter([0.0, 5.0, 20.0])
    windows = DriftWindows(clock=lambda: next(clock))
    url = urlparse(lr_server.url)
    pod = PodTarget("lr-pod", "uid-1", str(url.hostname), "1", None)
    request = DriftRequest("ns/lr", "lr", ("1",), [pod], int(url.port or 0), "/metrics", window_seconds=10.0)
    rows, _ = models.holdout()
    reference = driftref.parse((models.directory / "lr.drift.json").read_text())
    assert lr_server.infer(rows[:30]).status_code == 200  # before the watch: never in a window
    first = asyncio.run(windows.look(request)).versions[0]
    assert first.state == "loaded" and first.window_seconds == 0 and sum(first.live["f0"]) == 0
    assert lr_server.infer(rows[30:90]).status_code == 200
    second = asyncio.run(windows.look(request)).versions[0]
    expected = _bins(reference, rows[30:90])
    assert second.live == {f.name: tuple(expected[f.name, b] for b in range(f.bins)) for f in reference.features}
    assert second.reference == tuple((f.name, f.counts) for f in reference.features)
    assert second.window_seconds == 5.0
    # 15 s later the 10 s window starts at the second reading: nothing new was sent.
    third = asyncio.run(windows.look(request)).versions[0]
    assert sum(third.live["f0"]) == 0 and third.window_seconds == 15.0
