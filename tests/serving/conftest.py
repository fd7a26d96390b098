"""Fixtures for the model server: example models trained once per session, and real servers on
127.0.0.1 (an ephemeral port) running in a background thread with their own event loop, or as
`python -m modelserver` processes."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localcluster.testing import wait_until
from modelserver.server import ModelServer
from modelserver.settings import Settings
from modelserver_testing import Faults, faulty_server

ROOT = Path(__file__).resolve().parents[2]
ONE_ROW = [0.1 * i for i in range(20)]


def _train_module() -> Any:
    spec = importlib.util.spec_from_file_location("example_train", ROOT / "examples/models/train.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass(frozen=True)
class ExampleModels:
    directory: Path
    manifest: list[dict[str, Any]]

    def entry(self, file: str) -> dict[str, Any]:
        return next(m for m in self.manifest if m["file"] == file)

    def settings(self, file: str, **overrides: Any) -> Settings:
        entry = self.entry(file)
        base = Settings(model_name=entry["name"], model_version=entry["version"],
                        model_uri=str(self.directory / file), model_digest=entry["digest"],
                        allow_pickle=entry["format"] != "skops",
                        host="127.0.0.1", port=0, drain_delay_s=0.0, shutdown_timeout_s=5.0)
        return dataclasses.replace(base, **overrides)

    def holdout(self) -> tuple[list[list[float]], list[int]]:
        data = json.loads((self.directory / "holdout-classification.json").read_text())
        return data["X"], data["y"]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> ExampleModels:
    directory = tmp_path_factory.mktemp("models")
    return ExampleModels(directory, _train_module().train_all(directory))


class RunningServer:
    """A ModelServer on its own event loop in a daemon thread; `url` is its base URL.

    With `faults` it is the test-only wrapper's server (modelserver_testing), which injects them."""

    def __init__(self, settings: Settings, wait_ready: bool = True, faults: Faults | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ModelServer(settings) if faults is None else faulty_server(faults)(settings)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        if wait_ready:
            asyncio.run_coroutine_threadsafe(self.server.wait_loaded(), self.loop).result(30)

    def post(self, path: str, payload: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, json=payload, timeout=10, **kwargs)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=10)

    def infer(self, rows: list[list[float]], name: str = "lr", **extra: Any) -> requests.Response:
        flat = [v for row in rows for v in row]
        body = {"inputs": [{"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                            "data": flat}], **extra}
        return self.post(f"/v2/models/{name}/infer", body)

    def stop(self) -> None:
        self.session.close()
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class ServerProcess:
    """`python -m modelserver` on an ephemeral port; its output goes to a log read for the port.

    `module="modelserver_testing"` runs the test-only wrapper that injects MODELSERVER_CHAOS_* faults."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str = "modelserver") -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", module], env={**os.environ, **env},
                                         stdout=log, stderr=subprocess.STDOUT)
        try:
            port = wait_until(self._port, 30, "the server to listen", describe=self.log)
            self.url = f"http://127.0.0.1:{port}"
            wait_until(lambda: requests.get(self.url + "/v2/health/ready", timeout=2).status_code == 200, 30,
                       "the model to be ready", describe=self.log)
        except BaseException:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _port(self) -> int | None:
        assert self.proc.poll() is None, f"server exited during start-up:\n{self.log()}"
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log())
        return int(found.group(1)) if found else None

    def stop(self) -> int:
        """SIGTERM and the exit code; a server still running 30 s later is killed and fails the test."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the server did not stop within 30 s of SIGTERM:\n{self.log()}") from None


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(settings: Settings, wait_ready: bool = True, faults: Faults | None = None) -> RunningServer:
        server = RunningServer(settings, wait_ready, faults)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def lr_server(models: ExampleModels, start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server(models.settings("lr.joblib"))
