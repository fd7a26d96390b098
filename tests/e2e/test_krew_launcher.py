"""The krew launcher as a user meets it: unpacked from the release archive, first run installs the
release's modelrollout-operator into its own virtualenv and runs the plugin; later runs start it directly.

No cluster is needed; it is in the e2e tier because it is slow (a virtualenv with numpy and scipy). PyPI is
replaced by the wheels this checkout builds plus `make wheelhouse`'s, through pip's own environment settings
(PIP_NO_INDEX, PIP_FIND_LINKS), which the launcher leaves to pip as it does for a user's PIP_INDEX_URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.test_image_sets import sources, wheelhouse  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


def _release_version() -> str:
    return str(yaml.safe_load((ROOT / "charts" / "modelrollout" / "Chart.yaml").read_text())["appVersion"])


@pytest.fixture(scope="module")
def local_index(sources: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> str:  # noqa: F811
    """This checkout's contract and operator wheels, built offline, beside the dependencies' wheels."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                            "--find-links", str(wheelhouse), "-w", str(out), "./serving/contract", "./operator"],
                           cwd=sources, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return f"{out} {wheelhouse}"


def _unpacked_launcher(tmp_path: Path, version: str) -> Path:
    """The release archive for v<version>, built by the release script and unpacked as krew does."""
    made = subprocess.run([sys.executable, str(ROOT / "hack" / "release" / "krew_manifest.py"), "bundle",
                           f"v{version}", str(tmp_path)], capture_output=True, text=True, check=True)
    with tarfile.open(made.stdout.strip()) as tar:
        tar.extractall(tmp_path / "krew", filter="data")
    return tmp_path / "krew" / "kubectl-modelrollout"


def _env(tmp_path: Path, local_index: str, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
            "MODELROLLOUT_PYTHON": shutil.which("python3.11") or sys.executable,
            "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": local_index, "PIP_CONSTRAINT": str(ROOT / "constraints.txt"),
            **extra}


def test_first_run_installs_the_release_and_later_runs_start_it(local_index: str, tmp_path: Path) -> None:
    version = _release_version()
    launcher = _unpacked_launcher(tmp_path, version)
    env = _env(tmp_path, local_index)

    first = subprocess.run([str(launcher), "version"], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    assert f"installing modelrollout-operator=={version}" in first.stderr
    assert first.stdout.strip() == f"kubectl-modelrollout {version}"
    venv = tmp_path / ".local" / "share" / "modelrollout-plugin" / version
    assert (venv / ".complete").exists()

    again = subprocess.run([str(launcher), "version"], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "installing" not in again.stderr, "a second run must not reinstall"


def test_an_interrupted_install_is_redone(local_index: str, tmp_path: Path) -> None:
    version = _release_version()
    launcher = _unpacked_launcher(tmp_path, version)
    venv = tmp_path / "plugins" / version
    (venv / "bin").mkdir(parents=True)  # what a killed first run leaves: no .complete
    env = _env(tmp_path, local_index, MODELROLLOUT_PLUGIN_HOME=str(tmp_path / "plugins"))
    out = subprocess.run([str(launcher), "version"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "installing" in out.stderr and (venv / ".complete").exists()
