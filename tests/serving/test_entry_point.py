"""`python -m modelserver` answers a user's mistake with one line on stderr, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from localcluster.testing import wait_until

from .conftest import ONE_ROW, ExampleModels, RunningServer

pytestmark = pytest.mark.unit


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelserver", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(("args", "fragment"), [(["--bogus"], "unrecognized arguments: --bogus"),
                                                (["--port", "eighty"], "--port / PORT"),
                                                (["--batching", "sometimes"], "batching must be one of"),
                                                (["--feedback-key-file", "/nonexistent/key"],
                                                 "MODELSERVER_FEEDBACK_KEY_FILE: [Errno 2]"),
                                                (["--feedback-key-file", "/dev/null"], "holds 0 bytes")])
def test_a_bad_flag_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("modelserver: error: "), done.stderr
    assert fragment in done.stderr


def test_a_port_in_use_is_one_line_and_exit_1(models: ExampleModels) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("--host", "127.0.0.1", "--port", str(port),
                    "--model-uri", str(models.directory / "lr.skops"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"modelserver: cannot listen on 127.0.0.1:{port}: "
                                                f"address already in use"], done.stderr


def test_a_model_file_that_cannot_be_read_is_a_load_failure_with_its_reason(
        models: ExampleModels, start_server: Callable[..., RunningServer]) -> None:
    # /proc/self/mem is a regular file that reading at offset 0 fails on, even for root.
    server = start_server(models.settings("lr.skops", model_uri="/proc/self/mem", model_format="skops",
                                          model_digest="", load_retry_max_s=1.0), wait_ready=False)
    error = wait_until(lambda: (r := server.infer([ONE_ROW])).status_code == 503
                       and "fetch_failed" in r.json()["error"] and r.json()["error"], 10, "the load failure's reason")
    assert "/proc" not in error
    assert server.get("/v2/health/live").status_code == 200
