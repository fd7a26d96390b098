"""Each image's distribution holds only its own side (issue 16 item 5; docs/install.md).

The operator must run without scikit-learn, the model server or the local cluster; the model server
without the Kubernetes client, kopf or the test-only fault injection. Imported for real, in a fresh
interpreter that refuses the other side's modules; and each distribution declares what its code imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ["modelserver", "modelserver.contract", "modelserver.contract_parse"]

# Imports every module of a package with a finder in front that refuses (and records) the blocked names;
# exits 1 naming each refused import and who asked for it.
_IMPORT_ALL = """
import importlib, importlib.abc, pkgutil, sys, traceback
package, blocked, allowed = sys.argv[1], sys.argv[2].split(","), set(sys.argv[3].split(","))
refused = []
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in allowed and any(name == b or name.startswith(b + ".") for b in blocked):
            asker = [f for f in traceback.extract_stack()[:-1] if "frozen" not in f.filename][-1]
            refused.append(f"{name} (from {asker.filename}:{asker.lineno})")
            raise ImportError(f"{name} belongs to the other side")
        return None
sys.meta_path.insert(0, Refuse())
root = importlib.import_module(package)
names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
                     if not m.name.endswith(".__main__")]
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        refused.append(f"{name}: {exc}")
print(len(names), "modules")
if refused:
    sys.exit("refused: " + "; ".join(refused))
"""


def _import_all(package: str, blocked: list[str], allowed: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _IMPORT_ALL, package, ",".join(blocked), ",".join(allowed)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize(("package", "blocked", "allowed"), [
    ("modelrollout", ["sklearn", "skops", "joblib", "localcluster", "modelserver", "modelserver_testing"], CONTRACT),
    ("modelserver", ["kubernetes", "kopf", "modelrollout", "localcluster", "modelserver_testing"], []),
])
def test_each_side_imports_every_module_without_the_other_side(package: str, blocked: list[str],
                                                               allowed: list[str]) -> None:
    done = _import_all(package, blocked, allowed)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[0]) > 20  # every module, not just the package


def test_the_check_sees_a_refused_import() -> None:
    # modelserver.server needs aiohttp: refusing it must fail the run, or the check above proves nothing.
    done = _import_all("modelserver", ["aiohttp"], [])
    assert done.returncode == 1 and "aiohttp" in done.stderr


def _project(path: str) -> dict[str, object]:
    with (ROOT / path).open("rb") as f:
        return dict(tomllib.load(f)["project"])


def _names(requirements: object) -> set[str]:
    assert isinstance(requirements, list)
    return {str(r).split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for r in requirements}


# import name -> distribution name, where they differ
_DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml", "prometheus_client": "prometheus-client"}


def _third_party_imports(folder: Path, own: set[str]) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            found.update(t for t in tops if t not in sys.stdlib_module_names and t not in own)
    return {_DISTRIBUTION.get(t, t) for t in found}


@pytest.mark.parametrize(("pyproject", "folder", "own"), [
    ("operator/pyproject.toml", "operator/modelrollout", {"modelrollout", "modelserver"}),
    ("serving/pyproject.toml", "serving/modelserver", {"modelserver"}),
])
def test_each_distribution_declares_what_its_code_imports(pyproject: str, folder: str, own: set[str]) -> None:
    declared = _names(_project(pyproject)["dependencies"])
    assert "modelrollout-contract" in declared
    assert _third_party_imports(ROOT / folder, own) <= declared


def test_the_development_install_holds_every_distributions_requirements() -> None:
    # `make venv` installs the root distribution: what either image needs must be there with the same bound.
    root = _project("pyproject.toml")
    assert isinstance(root["dependencies"], list)
    parts = ["serving/contract/pyproject.toml", "operator/pyproject.toml", "serving/pyproject.toml"]
    for part in parts:
        project = _project(part)
        assert project["version"] == root["version"]
        deps = project["dependencies"]
        assert isinstance(deps, list)
        missing = [d for d in deps if not d.startswith("modelrollout-") and d not in root["dependencies"]]
        assert not missing, f"{part}: {missing} not in the root pyproject.toml's dependencies"
