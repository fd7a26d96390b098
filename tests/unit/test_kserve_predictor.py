"""examples/kserve: the KServe custom predictor finds and checks its model file as it documents, and its
Dockerfile installs the versions the tests run (hack/build-kserve.sh, constraints.txt) as the pods' uid.
The predictor serving traffic is tested on the local cluster (tests/e2e/test_kserve.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from localcluster import binaries, images
from modelrollout.workloads import CONTAINER_SECURITY
from tests.conftest import ROOT
from tests.unit.test_images import parse

pytestmark = pytest.mark.unit

FOLDER = ROOT / "examples" / "kserve"


@pytest.fixture(scope="module")
def predictor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kserve_predictor", FOLDER / "predictor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_folder_must_hold_exactly_one_model_file(predictor: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a model")
    with pytest.raises(predictor.ModelMissingError):
        predictor.local_model_file(str(tmp_path), tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"x")
    assert predictor.local_model_file(str(tmp_path), tmp_path) == tmp_path / "model.joblib"
    assert predictor.local_model_file(str(tmp_path / "model.joblib"), tmp_path) == tmp_path / "model.joblib"
    (tmp_path / "other.pkl").write_bytes(b"y")
    with pytest.raises(RuntimeError, match="more than one model file"):
        predictor.local_model_file(str(tmp_path), tmp_path)
    with pytest.raises(predictor.ModelMissingError):
        predictor.local_model_file(str(tmp_path / "absent.joblib"), tmp_path)


def test_a_file_other_than_the_digest_names_is_refused_before_it_is_unpickled(
        predictor: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"published bytes")
    published = "sha256:" + hashlib.sha256(b"published bytes").hexdigest()
    predictor.check_digest(path, published)
    path.write_bytes(b"swapped bytes")
    with pytest.raises(RuntimeError, match="is not MODEL_DIGEST"):
        predictor.check_digest(path, published)


def test_the_operators_environment_configures_it_and_flags_win(
        predictor: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "iris")
    monkeypatch.setenv("MODEL_URI", "/mnt/models/lr.joblib")
    monkeypatch.setenv("PORT", "9000")
    args = predictor.parse_args([])
    assert (args.model_name, args.model_dir, args.http_port) == ("iris", "/mnt/models/lr.joblib", 9000)
    args = predictor.parse_args(["--model_name", "fraud", "--model_dir", "/m", "--http_port", "8080"])
    assert (args.model_name, args.model_dir, args.http_port) == ("fraud", "/m", 8080)


def test_the_image_installs_the_tested_versions_and_runs_as_the_pods_uid() -> None:
    [stage] = parse(FOLDER / "Dockerfile")
    pins = dict(re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", " ".join(stage.all("RUN"))))
    constraints = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    assert pins.pop("kserve") == binaries.KSERVE_VERSION
    assert f"KSERVE_VERSION:-{binaries.KSERVE_VERSION}" in (ROOT / "hack" / "build-kserve.sh").read_text()
    assert pins and all(constraints[name] == version for name, version in pins.items()), pins
    [user] = stage.all("USER")
    assert int(user.split(":")[0]) == CONTAINER_SECURITY["runAsUser"]
    for arg in stage.all("COPY"):
        assert (FOLDER / arg.split()[0]).is_file(), arg
    # The local cluster stands in for the same image with the same script.
    [entrypoint] = stage.all("ENTRYPOINT")
    assert Path(json.loads(entrypoint)[-1]).name == "predictor.py"
    local = images.resolve("modelrollout/kserve-sklearn-predictor:0.21.0").entrypoint
    assert local[0] == str(binaries.kserve_python_path()) and local[-1] == str(FOLDER / "predictor.py")
