"""The docs cannot drift from the CRD, and the core (and analysis) stay free of I/O libraries
and of the other packages of this repository (the model server, the local cluster)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.core.phases import Phase

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "modelrollout.md"
# I/O libraries, and the server and test cluster: the operator image ships neither.
FORBIDDEN_IN_PURE = ("kopf", "kubernetes", "aiohttp", "requests", "urllib3", "modelserver", "localcluster")


def crd_schema() -> dict[str, Any]:
    """The schema source the CRD is generated from: the fields this project defines. Kubernetes' own types,
    inlined from a `$ref` (spec.serving.env, ...), are documented by Kubernetes and not walked into."""
    crd = yaml.safe_load((ROOT / "hack" / "crd" / "modelrollout.dev_modelrollouts.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def property_paths(schema: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}"
        yield path
        yield from property_paths(sub, path)
        yield from property_paths(sub.get("items", {}), f"{path}[]")


def test_every_spec_field_is_documented() -> None:
    text = DOCS.read_text()
    paths = list(property_paths(crd_schema()["properties"]["spec"], "spec"))
    assert len(paths) > 40
    missing = [p for p in paths if f"`{p}`" not in text]
    assert not missing, f"document these in {DOCS.name}: {missing}"


def test_every_status_field_and_phase_is_documented() -> None:
    text = DOCS.read_text()
    status = crd_schema()["properties"]["status"]
    missing = [p for p in property_paths(status, "status") if f"`{p}`" not in text and not p.startswith("status.kopf")]
    assert not missing, missing
    assert all(f"`{phase.value}`" in text for phase in Phase)


@pytest.mark.parametrize("package", ["modelrollout.core", "modelrollout.analysis"])
def test_pure_packages_import_no_io_library_server_or_cluster(package: str) -> None:
    package_dir = ROOT / "operator" / Path(*package.split("."))
    # Subpackages too (core.routers): every module, not only the top level.
    modules = sorted(".".join((package, *p.relative_to(package_dir).with_suffix("").parts))
                     for p in package_dir.rglob("*.py") if p.stem != "__init__")
    assert len(modules) >= 3
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(','.join(m for m in {FORBIDDEN_IN_PURE!r} if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert found.stdout.strip() == "", f"{package} pulls in forbidden packages: {found.stdout}"
