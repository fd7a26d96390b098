"""SIGTERM under load drops nothing; every setting comes from a flag or the environment."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from modelserver.settings import Settings, read_settings

from .conftest import ONE_ROW, ExampleModels, ServerProcess

pytestmark = pytest.mark.unit


def test_sigterm_under_load_finishes_in_flight_requests_and_exits_0(models: ExampleModels, tmp_path) -> None:
    entry = models.entry("lr.skops")
    # An ephemeral port: a fixed one collided with other servers on the shared build machine.
    env = {"MODEL_NAME": "lr", "MODEL_URI": str(models.directory / "lr.skops"),
           "MODEL_DIGEST": entry["digest"], "HOST": "127.0.0.1", "PORT": "0",
           # Requests (150 ms) outlast the drain delay (50 ms): some are in flight when the listener closes.
           "MODELSERVER_CHAOS_LATENCY_MS": "150", "MODELSERVER_DRAIN_DELAY_S": "0.05"}
    server = ServerProcess(env, tmp_path / "server.log", module="modelserver_testing")
    proc, url = server.proc, server.url
    try:
        routed = threading.Event()  # what an endpoints controller does: stop routing once unready
        routed.set()
        statuses: list[int] = []

        def client() -> None:
            with requests.Session() as session:
                while routed.is_set():
                    body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": ONE_ROW}]}
                    statuses.append(session.post(url + "/v2/models/lr/infer", json=body, timeout=10).status_code)

        def watch_readiness() -> None:
            while requests.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                time.sleep(0.02)
            routed.clear()

        with ThreadPoolExecutor(9) as pool:
            clients = [pool.submit(client) for _ in range(8)]
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            pool.submit(watch_readiness).result(10)
            for c in clients:
                c.result(15)  # raises if any request failed to connect or was cut off
        assert proc.wait(15) == 0
        assert len(statuses) >= 16 and set(statuses) == {200}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_answers_given_while_draining_close_their_connection(models: ExampleModels, tmp_path) -> None:
    entry = models.entry("lr.skops")
    env = {"MODEL_NAME": "lr", "MODEL_URI": str(models.directory / "lr.skops"), "MODEL_DIGEST": entry["digest"],
           "HOST": "127.0.0.1", "PORT": "0", "MODELSERVER_DRAIN_DELAY_S": "3"}
    server = ServerProcess(env, tmp_path / "server.log")
    proc, url = server.proc, server.url
    body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": ONE_ROW}]}
    try:
        with requests.Session() as session:
            before = session.post(url + "/v2/models/lr/infer", json=body, timeout=10)
            assert before.status_code == 200 and before.headers.get("Connection", "").lower() != "close"
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 2
            while session.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                assert time.monotonic() < deadline, "still ready 2 s after SIGTERM"
                time.sleep(0.02)
            during = session.post(url + "/v2/models/lr/infer", json=body, timeout=10)
        assert during.status_code == 200 and during.headers.get("Connection", "").lower() == "close"
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_flags_override_env_which_overrides_defaults() -> None:
    env = {"MODEL_NAME": "iris", "PORT": "9000", "MODELSERVER_BATCHING": "on", "MODELSERVER_MAX_BATCH_WAIT_MS": "0.25",
           "MODEL_ALLOW_PICKLE": "true"}
    s = read_settings(["--port", "9100"], env=env)
    assert (s.model_name, s.port, s.batching, s.max_batch_wait_ms, s.allow_pickle) == (
        "iris", 9100, "on", 0.25, True)
    assert read_settings([], env={}) == Settings()


@pytest.mark.parametrize("env", [{"MODELSERVER_BATCHING": "sometimes"}, {"PORT": "eighty"},
                                 {"MODEL_DIGEST": "md5:abc"}, {"MODELSERVER_MAX_BATCH_WAIT_MS": "soon"}])
def test_bad_settings_stop_the_server_with_a_message(env: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        read_settings([], env=env)


def test_the_entry_point_freezes_what_is_alive_once_the_model_is_loaded(models: ExampleModels) -> None:
    import asyncio
    import gc

    from modelserver.server import ModelServer, freeze_after_load

    async def load_and_freeze() -> tuple[bool, int]:
        server = ModelServer(models.settings("rf.joblib"))
        await server.start()
        try:
            await freeze_after_load(server)
            return server.plane.is_ready(), gc.get_freeze_count()
        finally:
            await server.shutdown()

    gc.unfreeze()
    try:
        ready, frozen = asyncio.run(load_and_freeze())
    finally:
        gc.unfreeze()  # give this test process its collector back
    assert ready  # it froze after the load, so the model's own objects are among the frozen
    assert frozen > 10_000
