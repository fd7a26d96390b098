"""What each image installs, measured: its Dockerfile's `pip install` run into a fresh virtualenv.

There is no Docker engine here, so the images are not built; their package sets are, exactly as the
Dockerfiles name them, offline from the wheelhouse `make wheelhouse` downloads (hack/build-wheelhouse.sh).
In the e2e tier because it is slow (two virtualenvs with numpy and scipy), not because it needs the cluster.
`pytest -s` prints the sizes that docs/install.md states.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_images import DOCKERFILES, installed_projects

pytestmark = pytest.mark.e2e

# What a fresh virtualenv holds before anything is installed: not part of either set.
_BASE = {"pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth"}
CONTRACT_FILES = {"__init__.py", "contract.py", "contract_parse.py"}


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    done = subprocess.run([str(ROOT / "hack" / "build-wheelhouse.sh")], capture_output=True, text=True)
    assert done.returncode == 0, f"no wheelhouse: run `make wheelhouse` (with network) first\n{done.stderr}"
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the Dockerfiles COPY: building in the checkout would leave build/ folders there."""
    out = tmp_path_factory.mktemp("context")
    skip = shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "*.pyc")
    for folder in ("operator", "serving"):
        shutil.copytree(ROOT / folder, out / folder, ignore=skip)
    shutil.copy(ROOT / "constraints.txt", out)
    return out


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def build_set(name: str, sources: Path, wheelhouse: Path, into: Path) -> dict[str, int]:
    """Install the image's set into a new virtualenv; its top-level packages and their sizes in bytes."""
    venv.create(into, with_pip=True)
    site = next((into / "lib").glob("python3*/site-packages"))
    before = {p.name for p in site.iterdir()}
    projects = [f"./{p}" for p in installed_projects(DOCKERFILES[name])]
    pip = [str(into / "bin" / "pip"), "--disable-pip-version-check"]
    install = subprocess.run([*pip, "install", "-q", "--no-index", "--find-links", str(wheelhouse),
                              "-c", "constraints.txt", *projects], cwd=sources, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    check = subprocess.run([*pip, "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    sizes: dict[str, int] = {}
    for path in site.iterdir():
        if path.name in before or path.name in _BASE or path.name == "__pycache__":
            continue
        key = "(metadata)" if path.name.endswith((".dist-info", ".pth")) else path.name.removesuffix(".py")
        key = key.split(".")[0] if path.suffix == ".so" else key
        sizes[key] = sizes.get(key, 0) + _size(path)
    return sizes


def _report(name: str, sizes: dict[str, int]) -> None:
    mib = 1024 * 1024
    print(f"\n{name}: {sum(sizes.values()) / mib:.1f} MiB in site-packages")
    for package, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"  {package:24} {size / mib:7.1f} MiB")


def _run(venv_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv_dir / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=300)


def test_the_operator_image_set_has_no_model_server_and_no_scikit_learn(
        sources: Path, wheelhouse: Path, tmp_path: Path) -> None:
    sizes = build_set("operator", sources, wheelhouse, tmp_path / "venv")
    _report("operator", sizes)
    assert {"modelrollout", "kopf", "kubernetes", "scipy", "numpy"} <= set(sizes)
    assert not {"sklearn", "skops", "joblib", "localcluster", "modelserver_testing"} & set(sizes)
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert {p.name for p in (site / "modelserver").glob("*.py")} == CONTRACT_FILES
    # The operator, its handlers and the plugin import in that set alone.
    done = _run(tmp_path / "venv", "python", "-c", "import modelrollout.main, modelrollout.handlers, modelrollout.cli")
    assert done.returncode == 0, done.stderr
    for script in ("modelrollout-operator", "kubectl-modelrollout"):
        done = _run(tmp_path / "venv", script, "--help")
        assert done.returncode == 0, f"{script}: {done.stderr}"


def test_the_serving_image_set_has_no_kubernetes_client_and_no_fault_injection(
        sources: Path, wheelhouse: Path, tmp_path: Path) -> None:
    sizes = build_set("modelserver", sources, wheelhouse, tmp_path / "venv")
    _report("modelserver", sizes)
    assert {"modelserver", "sklearn", "aiohttp", "numpy"} <= set(sizes)
    assert not {"kubernetes", "kopf", "modelrollout", "localcluster", "modelserver_testing"} & set(sizes)
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert CONTRACT_FILES | {"server.py", "__main__.py"} <= {p.name for p in (site / "modelserver").glob("*.py")}
    done = _run(tmp_path / "venv", "modelserver", "--help")
    assert done.returncode == 0 and "MODEL_URI" in done.stdout and "chaos" not in done.stdout.lower(), done.stderr
    done = _run(tmp_path / "venv", "python", "-c", "import modelserver.server, modelserver.validation.cli")
    assert done.returncode == 0, done.stderr

