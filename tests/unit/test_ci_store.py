"""The CI pipeline's model store (examples/ci/deploy/store.py) as a real process on loopback: uploads
need the token and the body's sha256, a published file is never replaced, reads need nothing."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.testing import wait_until
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

STORE = ROOT / "examples" / "ci" / "deploy" / "store.py"
TOKEN = "t" * 24


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "token").write_text(TOKEN + "\n")
    root = tmp_path / "root"
    proc = subprocess.Popen([sys.executable, str(STORE), "--root", str(root), "--bind", "127.0.0.1", "--port",
                             str(port), "--token-file", str(tmp_path / "token")], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_until(answers, 20, "the store to listen")
        yield url, root
    finally:
        proc.terminate()
        proc.wait(10)


def put(url: str, body: bytes, sha: str | None = None, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"X-Checksum-Sha256": sha or hashlib.sha256(body).hexdigest()}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_an_upload_is_stored_once_and_served_to_anyone(store: tuple[str, Path]) -> None:
    url, root = store
    assert put(f"{url}/fraud/3/model.skops", b"model bytes")[0] == 201
    assert get(f"{url}/fraud/3/model.skops") == (200, b"model bytes")
    # A re-run of the pipeline uploads the same bytes: accepted, nothing changes.
    assert put(f"{url}/fraud/3/model.skops", b"model bytes")[0] == 200
    # Other bytes under a published version: refused, the published file stays.
    status, message = put(f"{url}/fraud/3/model.skops", b"other bytes")
    assert status == 409 and "new version" in message
    assert (root / "fraud" / "3" / "model.skops").read_bytes() == b"model bytes"


def test_an_upload_without_the_token_or_with_a_wrong_checksum_is_refused(store: tuple[str, Path]) -> None:
    url, root = store
    assert put(f"{url}/fraud/4/model.skops", b"x", token=None)[0] == 401
    assert put(f"{url}/fraud/4/model.skops", b"x", token="w" * 24)[0] == 401
    status, message = put(f"{url}/fraud/4/model.skops", b"cut short", sha="0" * 64)
    assert status == 400 and "0" * 64 in message
    assert put(f"{url}/fraud/4/model.skops", b"x", sha="not-hex")[0] == 400
    assert put(f"{url}/.hidden/model.skops", b"x")[0] == 400
    assert get(f"{url}/fraud/4/model.skops")[0] == 404
    assert not (root / "fraud" / "4").exists() or not any((root / "fraud" / "4").iterdir())


def test_folders_are_not_listed(store: tuple[str, Path]) -> None:
    url, _ = store
    assert put(f"{url}/fraud/5/model.skops", b"x")[0] == 201
    assert get(f"{url}/fraud/5/")[0] == 404
