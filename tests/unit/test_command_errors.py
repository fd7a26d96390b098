"""What a person sees when a command cannot do its job: one line saying why, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: connections are refused


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: ml}}}}]
current-context: x
""")
    return path


def test_kubectl_plugin_without_a_kubeconfig_says_so(tmp_path: Path) -> None:
    done = run("-m", "modelrollout.cli", "status", "fraud", env={"KUBECONFIG": str(tmp_path / "missing"),
                                                               "HOME": str(tmp_path)})
    assert one_line_error(done).startswith("error: no usable kubeconfig")


def test_kubectl_plugin_with_an_unreachable_api_server_names_it(tmp_path: Path) -> None:
    port = closed_port()
    done = run("-m", "modelrollout.cli", "status", "fraud", "--kubeconfig",
               str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}")))
    line = one_line_error(done)
    assert line.startswith(f"error: cannot reach the API server at 127.0.0.1:{port}")
    assert line.endswith("is the cluster running, and does the kubeconfig's context (--context) point at it?")


@pytest.mark.parametrize("argv", [["--bogus"], ["list", "--bogus"], ["status", "fraud", "--bogus"]])
def test_kubectl_plugin_names_a_bad_flag_in_two_lines(argv: list[str]) -> None:
    done = run("-m", "modelrollout.cli", *argv)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("usage:"), done.stderr
    assert lines[1].endswith("error: unrecognized arguments: --bogus"), done.stderr


def test_kubectl_plugin_without_a_command_asks_for_one() -> None:
    done = run("-m", "modelrollout.cli")
    assert done.returncode == 2 and "the following arguments are required: COMMAND" in done.stderr, done.stderr


def test_localcluster_up_without_binaries_says_how_to_build_them(tmp_path: Path) -> None:
    done = run("-m", "localcluster", "up", "--state-dir", str(tmp_path / "state"),
               env={"MODELROLLOUT_CACHE": str(tmp_path / "empty-cache")})
    line = one_line_error(done)
    assert line.startswith("localcluster: ") and "make k8s-bins" in line, line


def test_demo_outside_the_namespace_or_without_binaries_is_one_line(tmp_path: Path) -> None:
    done = run("-m", "localcluster.demo", "--plain", env={"MODELROLLOUT_CACHE": str(tmp_path / "empty-cache")})
    errors = [line for line in done.stderr.strip().splitlines() if not line.startswith("[demo]")]
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout, done.stderr
    assert errors[0].startswith("demo failed: "), done.stderr
