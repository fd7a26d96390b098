"""Loading: digest checks before unpickling, skops as the safe format, unready with a reason on failure."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from modelserver.contract_parse import parse_pod_metrics

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit

WRONG_DIGEST = "sha256:" + "0" * 64


def _failed(server: RunningServer, reason: str) -> None:
    assert server.get("/v2/health/live").status_code == 200
    assert server.get("/v2/health/ready").status_code == 503
    # The readiness answer gives the reason's code (what the operator reads from the pod), nothing more.
    assert server.get("/v2/health/ready").json() == {"ready": False, "state": "failed", "reason": reason}
    assert server.get("/v2/models/lr/ready").json() == {"name": "lr", "ready": False, "state": "failed",
                                                        "reason": reason}
    infer = server.infer([ONE_ROW])
    assert infer.status_code == 503 and reason in infer.json()["error"]
    # Any client can read a 503: the file's name, location and digests stay in logs and metrics.
    settings = server.server.settings
    leaks = [settings.model_uri, Path(settings.model_uri).name, "sha256", "/"]
    assert not [leak for leak in leaks if leak in infer.json()["error"]], infer.json()["error"]
    m = parse_pod_metrics(server.get("/metrics").text).model("lr", "1")
    assert m is not None and m.load_failures == 1 and not m.ready


def test_digest_mismatch_refuses_to_load_and_stays_unready(
        models: ExampleModels, start_server: Callable[..., RunningServer],
        caplog: pytest.LogCaptureFixture) -> None:
    server = start_server(models.settings("lr.joblib", model_digest=WRONG_DIGEST))
    _failed(server, "digest_mismatch")
    assert any("digest mismatch" in r.getMessage() for r in caplog.records)
    assert server.server.plane.predictor is None


def test_pickle_without_digest_is_refused_without_offering_the_files_digest(
        models: ExampleModels, start_server: Callable[..., RunningServer],
        caplog: pytest.LogCaptureFixture) -> None:
    _failed(start_server(models.settings("lr.joblib", model_digest="")), "missing_digest")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "MODEL_DIGEST" in logged and "skops" in logged
    # The digest of whatever file is there proves nothing: it must not be offered as the fix.
    assert models.entry("lr.joblib")["digest"] not in logged


class _RunsCode:
    """Unpickling this touches a file: what any pickle can do, digest or not."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def _code_running_pickle(tmp_path: Path) -> tuple[Path, str, Path]:
    import hashlib
    import pickle

    marker, path = tmp_path / "code-ran", tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), marker


def test_pickle_with_a_matching_digest_is_not_opened_without_the_explicit_opt_in(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    path, digest, marker = _code_running_pickle(tmp_path)
    settings = models.settings("lr.joblib", model_uri=str(path), model_digest=digest, allow_pickle=False)
    _failed(start_server(settings), "pickle_not_allowed")
    assert not marker.exists()


def test_with_the_opt_in_a_matching_digest_only_proves_which_file_runs(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    path, digest, marker = _code_running_pickle(tmp_path)
    settings = models.settings("lr.joblib", model_uri=str(path), model_digest=digest, allow_pickle=True)
    _failed(start_server(settings), "validation_failed")
    assert marker.exists()  # the documented trust model: allowPickle means trusting the file's author


@pytest.mark.parametrize("file", ["rf.skops", "lr.skops"])
def test_skops_loads_without_digest(models: ExampleModels, start_server: Callable[..., RunningServer],
                                    file: str) -> None:
    server = start_server(models.settings(file, model_digest=""))
    assert server.infer([ONE_ROW], name=file.split(".")[0]).status_code == 200


class Doubler:
    """A type skops does not know: loading it would mean trusting this module's code."""

    n_features_in_ = 20

    def predict(self, rows: object) -> object:
        return rows


def test_skops_file_with_an_untrusted_type_is_refused_unless_listed(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    import skops.io

    path = tmp_path / "lr.skops"
    skops.io.dump(Doubler(), path)
    _failed(start_server(models.settings("lr.skops", model_uri=str(path), model_digest="")), "untrusted_types")
    listed = models.settings("lr.skops", model_uri=str(path), model_digest="",
                             model_trusted_types=f"{__name__}.Doubler", model_version="2")
    assert start_server(listed).server.plane.is_ready()


def test_configured_feature_count_must_match_the_model(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    _failed(start_server(models.settings("lr.joblib", model_features=7)), "validation_failed")


def test_corrupt_file_with_matching_digest_fails_to_deserialize(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    import hashlib

    broken = tmp_path / "lr.joblib"
    broken.write_bytes(b"not a pickle at all")
    digest = "sha256:" + hashlib.sha256(broken.read_bytes()).hexdigest()
    _failed(start_server(models.settings("lr.joblib", model_uri=f"file://{broken}", model_digest=digest)),
            "deserialize_failed")


@pytest.fixture
def http_models(models: ExampleModels) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(models.directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_http_uri_is_downloaded_and_verified(http_models: str, models: ExampleModels,
                                             start_server: Callable[..., RunningServer]) -> None:
    server = start_server(models.settings("lr.joblib", model_uri=f"{http_models}/lr.joblib"))
    assert server.infer([ONE_ROW]).status_code == 200


def test_server_is_live_while_loading(models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    # A missing file is retried (a volume may appear late): the pod stays live and unready meanwhile.
    server = start_server(models.settings("lr.joblib", model_uri="/nonexistent/lr.joblib"), wait_ready=False)
    assert server.get("/v2/health/live").status_code == 200
    assert server.get("/v2/health/ready").status_code == 503
    # Retried, so "loading" rather than "failed", but the reason is already there to see.
    wait = time.monotonic() + 10
    while server.get("/v2/health/ready").json().get("reason") != "fetch_failed" and time.monotonic() < wait:
        time.sleep(0.05)
    assert server.get("/v2/health/ready").json() == {"ready": False, "state": "loading", "reason": "fetch_failed"}


def _log_pipeline(tmp_path: Path, logs: int) -> tuple[str, str]:
    """LogisticRegression after `logs` np.log steps, fitted on values in [2, 10]: a zero row is refused."""
    import hashlib

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(0)
    x = rng.uniform(2, 10, size=(200, 3))
    steps = [FunctionTransformer(np.log) for _ in range(logs)]
    model = make_pipeline(*steps, LogisticRegression()).fit(x, (x[:, 0] > 6).astype(int))
    path = tmp_path / f"log{logs}.joblib"
    joblib.dump(model, path)
    return str(path), "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_model_that_refuses_the_zero_row_is_warmed_up_on_another(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    uri, digest = _log_pipeline(tmp_path, logs=1)
    server = start_server(models.settings("lr.joblib", model_uri=uri, model_digest=digest, model_features=3))
    assert server.server.plane.is_ready()
    assert server.infer([[5.0, 3.0, 7.0]]).status_code == 200


def test_a_model_that_refuses_every_warm_up_row_is_served_with_a_warning(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer],
        caplog: pytest.LogCaptureFixture) -> None:
    uri, digest = _log_pipeline(tmp_path, logs=2)  # log(log(1)) is -inf as well
    server = start_server(models.settings("lr.joblib", model_uri=uri, model_digest=digest, model_features=3))
    assert server.server.plane.is_ready()
    assert server.infer([[5.0, 3.0, 7.0]]).status_code == 200
    assert server.infer([[0.0, 0.0, 0.0]]).status_code == 422  # the model's own refusal, as before
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("warm-up" in w for w in warnings), warnings
    m = parse_pod_metrics(server.get("/metrics").text).model("lr", "1")
    assert m is not None and m.ready and m.load_failures == 0


def test_a_model_shipped_with_its_training_reference_is_warmed_up_on_a_training_like_row(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer],
        caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np

    from modelserver import driftref

    uri, digest = _log_pipeline(tmp_path, logs=2)  # refuses the all-zeros and all-ones rows
    rng = np.random.default_rng(1)
    (tmp_path / "log2.drift.json").write_text(driftref.build(rng.uniform(2, 10, size=(500, 3))).to_json())
    server = start_server(models.settings("lr.joblib", model_uri=uri, model_digest=digest, model_features=3))
    assert server.server.plane.is_ready()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert not any("warm-up" in w for w in warnings), warnings
    predictor = server.server.plane.predictor
    assert predictor is not None and predictor.loaded.predict_cost_s > 0  # measured on that row, not skipped
    assert server.infer([[5.0, 3.0, 7.0]]).status_code == 200


def test_a_model_whose_predict_is_broken_still_fails_warm_up(
        tmp_path: Path, models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    import hashlib
    import pickle

    path = tmp_path / "broken.pkl"
    path.write_bytes(pickle.dumps(Broken()))
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    _failed(start_server(models.settings("lr.joblib", model_uri=str(path), model_digest=digest)), "warmup_failed")


class Broken:
    """Fitted-looking, but predict() fails whatever the values: a broken model, not a picky one."""

    n_features_in_ = 20

    def predict(self, rows: object) -> object:
        raise RuntimeError("model internals are broken")
