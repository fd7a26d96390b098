"""The release workflow's scripts (hack/release/), run as the workflow runs them: stamping the chart with
the tag and the pushed image digest, and the krew launcher archive and manifest."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import ROOT
from tests.unit.test_chart import helm_path

pytestmark = pytest.mark.unit

RELEASE = ROOT / "hack" / "release"
DIGEST = "sha256:" + "ab" * 32


def _module(name: str) -> ModuleType:
    sys.path.insert(0, str(RELEASE))
    spec = importlib.util.spec_from_file_location(name, RELEASE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RELEASE / script), *args], capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the chart and of the published pyprojects, as a release checkout has them."""
    shutil.copytree(ROOT / "charts" / "modelrollout", tmp_path / "charts" / "modelrollout")
    for rel in ("operator/pyproject.toml", "serving/pyproject.toml", "serving/contract/pyproject.toml",
                "operator/modelrollout/workloads.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def _set_versions(repo: Path, version: str) -> None:
    """What a maintainer bumps before tagging."""
    for path in repo.glob("**/pyproject.toml"):
        text = path.read_text().replace('version = "0.1.0"', f'version = "{version}"')
        path.write_text(text.replace("modelrollout-contract==0.1.0", f"modelrollout-contract=={version}"))
    workloads = repo / "operator" / "modelrollout" / "workloads.py"
    workloads.write_text(workloads.read_text().replace("modelserver:0.1.0", f"modelserver:{version}"))


def _stamp(repo: Path, tag: str, digest: str = DIGEST) -> subprocess.CompletedProcess[str]:
    return run("chart_release.py", tag, digest, "--chart", str(repo / "charts" / "modelrollout"),
               "--root", str(repo))


def test_the_chart_carries_the_tag_and_the_pushed_digest_and_nothing_else_changes(repo: Path) -> None:
    chart = repo / "charts" / "modelrollout"
    before_chart = yaml.safe_load((chart / "Chart.yaml").read_text())
    before_values = yaml.safe_load((chart / "values.yaml").read_text())
    _set_versions(repo, "1.4.0-rc.1")
    out = _stamp(repo, "v1.4.0-rc.1")
    assert out.returncode == 0, out.stderr
    after_chart = yaml.safe_load((chart / "Chart.yaml").read_text())
    after_values = yaml.safe_load((chart / "values.yaml").read_text())
    assert after_chart == {**before_chart, "version": "1.4.0-rc.1", "appVersion": "1.4.0-rc.1"}
    assert after_values == {**before_values, "image": {**before_values["image"], "digest": DIGEST}}
    # Comments are kept: the file a user reads after `helm pull` still explains the value.
    original = (ROOT / "charts" / "modelrollout" / "values.yaml").read_text().splitlines()
    stamped = (chart / "values.yaml").read_text().splitlines()
    assert [a for a, b in zip(original, stamped, strict=True) if a != b] == ['  digest: ""']


def test_the_stamped_chart_renders_the_operator_by_digest(repo: Path) -> None:
    _set_versions(repo, "2.0.0")
    assert _stamp(repo, "v2.0.0").returncode == 0
    chart = str(repo / "charts" / "modelrollout")
    lint = subprocess.run([str(helm_path()), "lint", "--strict", chart], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run([str(helm_path()), "template", "r", chart],
                              capture_output=True, text=True, check=True).stdout
    assert f"image: ghcr.io/modelrollout/operator@{DIGEST}" in rendered.replace('"', "")
    assert "app.kubernetes.io/version: 2.0.0" in rendered.replace('"', "")


@pytest.mark.parametrize("tag", ["1.2.3", "v1.2", "v01.2.3", "release-1", "v1.2.3 "])
def test_a_tag_that_is_not_v_semver_is_refused_and_nothing_is_written(repo: Path, tag: str) -> None:
    chart = repo / "charts" / "modelrollout"
    before = (chart / "Chart.yaml").read_text(), (chart / "values.yaml").read_text()
    out = _stamp(repo, tag)
    assert out.returncode == 1 and "is not v<semver>" in out.stderr, out.stderr
    assert ((chart / "Chart.yaml").read_text(), (chart / "values.yaml").read_text()) == before


@pytest.mark.parametrize("digest", ["sha256:" + "AB" * 32, "sha256:abc", "ab" * 32, "sha512:" + "ab" * 64])
def test_a_malformed_digest_is_refused(repo: Path, digest: str) -> None:
    _set_versions(repo, "1.0.0")
    out = _stamp(repo, "v1.0.0", digest)
    assert out.returncode == 1 and "is not sha256:<64 lowercase hex>" in out.stderr, out.stderr
    assert 'digest: ""' in (repo / "charts" / "modelrollout" / "values.yaml").read_text()


def test_a_tag_the_distributions_do_not_carry_is_refused(repo: Path) -> None:
    out = _stamp(repo, "v0.2.0")  # the pyprojects still say 0.1.0
    assert out.returncode == 1, out.stderr
    assert "operator/pyproject.toml: version 0.1.0, the tag says 0.2.0" in out.stderr


def test_a_contract_pin_left_behind_is_refused(repo: Path) -> None:
    _set_versions(repo, "0.2.0")
    operator = repo / "operator" / "pyproject.toml"
    operator.write_text(operator.read_text().replace("modelrollout-contract==0.2.0", "modelrollout-contract==0.1.0"))
    out = _stamp(repo, "v0.2.0")
    assert out.returncode == 1 and "pins modelrollout-contract==0.1.0" in out.stderr, out.stderr


def test_a_default_serving_image_left_behind_is_refused(repo: Path) -> None:
    _set_versions(repo, "0.2.0")
    workloads = repo / "operator" / "modelrollout" / "workloads.py"
    workloads.write_text(workloads.read_text().replace("modelserver:0.2.0", "modelserver:0.1.0"))
    out = _stamp(repo, "v0.2.0")
    assert out.returncode == 1 and "the default serving image is 0.1.0, the tag says 0.2.0" in out.stderr


def test_without_a_digest_only_the_versions_are_checked(repo: Path) -> None:
    chart = repo / "charts" / "modelrollout"
    before = (chart / "Chart.yaml").read_text(), (chart / "values.yaml").read_text()
    refused = run("chart_release.py", "v0.2.0", "--root", str(repo))
    assert refused.returncode == 1 and "the tag says 0.2.0" in refused.stderr
    _set_versions(repo, "0.2.0")
    checked = run("chart_release.py", "v0.2.0", "--root", str(repo), "--chart", str(chart))
    assert checked.returncode == 0, checked.stderr
    assert ((chart / "Chart.yaml").read_text(), (chart / "values.yaml").read_text()) == before


def test_a_second_digest_line_stops_the_release(repo: Path) -> None:
    """The rewrite must touch exactly the image's digest; an ambiguous file is refused, not guessed."""
    _set_versions(repo, "1.0.0")
    values = repo / "charts" / "modelrollout" / "values.yaml"
    values.write_text(values.read_text() + '\nsidecar:\n  digest: ""\n')
    out = _stamp(repo, "v1.0.0")
    assert out.returncode == 1 and "values.yaml image.digest: expected one line to rewrite, found 2" in out.stderr


def test_the_published_distributions_carry_the_charts_version_today() -> None:
    """What the release workflow checks at tag time, checked at every commit: a bump is never half done."""
    chart_release = _module("chart_release")
    app_version = yaml.safe_load((ROOT / "charts" / "modelrollout" / "Chart.yaml").read_text())["appVersion"]
    chart_release.check_distributions(ROOT, app_version)


def _untar(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "kubectl-modelrollout"


def test_the_krew_archive_holds_the_launcher_for_the_release_and_is_reproducible(tmp_path: Path) -> None:
    out = run("krew_manifest.py", "bundle", "v1.2.3", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    archive = Path(out.stdout.strip())
    assert archive.name == "kubectl-modelrollout-v1.2.3.tar.gz"
    again = run("krew_manifest.py", "bundle", "v1.2.3", str(tmp_path / "b"))
    assert Path(again.stdout.strip()).read_bytes() == archive.read_bytes()
    launcher = _untar(archive, tmp_path / "x")
    assert os.access(launcher, os.X_OK)
    text = launcher.read_text()
    assert "VERSION=1.2.3\n" in text and "@VERSION@" not in text


def test_the_krew_manifest_names_the_assets_sha256_and_url(tmp_path: Path) -> None:
    archive = Path(run("krew_manifest.py", "bundle", "v1.2.3", str(tmp_path)).stdout.strip())
    out = run("krew_manifest.py", "manifest", "v1.2.3", str(archive), "--repo", "acme/modelrollout")
    assert out.returncode == 0, out.stderr
    plugin = yaml.safe_load(out.stdout)
    assert plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and plugin["kind"] == "Plugin"
    assert plugin["metadata"]["name"] == "modelrollout" and plugin["spec"]["version"] == "v1.2.3"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    platforms = plugin["spec"]["platforms"]
    assert {(p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"]) for p in platforms} == {
        ("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")}
    for platform in platforms:
        assert platform["sha256"] == sha
        assert platform["uri"] == \
            "https://github.com/acme/modelrollout/releases/download/v1.2.3/kubectl-modelrollout-v1.2.3.tar.gz"
        assert platform["bin"] == "kubectl-modelrollout"
    assert "python3 >= 3.11" in plugin["spec"]["caveats"]


def test_a_manifest_for_another_releases_archive_is_refused(tmp_path: Path) -> None:
    archive = Path(run("krew_manifest.py", "bundle", "v1.2.3", str(tmp_path)).stdout.strip())
    out = run("krew_manifest.py", "manifest", "v1.2.4", str(archive), "--repo", "acme/modelrollout")
    assert out.returncode == 1 and "the asset of v1.2.4 is named" in out.stderr, out.stderr


def test_the_launcher_refuses_a_python_older_than_3_11_naming_pipx(tmp_path: Path) -> None:
    archive = Path(run("krew_manifest.py", "bundle", "v1.2.3", str(tmp_path)).stdout.strip())
    launcher = _untar(archive, tmp_path / "x")
    old = shutil.which("python3.9") or shutil.which("python3.10") or shutil.which("python2")
    python = old or "/nonexistent/python3"  # no old interpreter here: one that does not run at all
    out = subprocess.run([str(launcher), "version"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MODELROLLOUT_PYTHON": python})
    assert out.returncode == 1
    assert "needs Python >= 3.11" in out.stderr and "pipx install modelrollout-operator==1.2.3" in out.stderr
    assert not (tmp_path / ".local" / "share" / "modelrollout-plugin" / "1.2.3").exists()


DIGESTS = {"OPERATOR_DIGEST": "sha256:" + "1" * 64, "SERVER_DIGEST": "sha256:" + "2" * 64,
           "CHART_DIGEST": "sha256:" + "3" * 64, "GITHUB_REPOSITORY": "acme/modelrollout"}


def _notes(tag: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RELEASE / "release_notes.py"), tag], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env})


def test_the_release_notes_name_each_artifact_by_its_digest_and_how_to_verify_it() -> None:
    out = _notes("v1.2.3", DIGESTS)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"ghcr.io/modelrollout/operator:1.2.3@{DIGESTS['OPERATOR_DIGEST']}" in text
    assert f"ghcr.io/modelrollout/modelserver:1.2.3@{DIGESTS['SERVER_DIGEST']}" in text
    assert DIGESTS["CHART_DIGEST"] in text and "oci://ghcr.io/modelrollout/charts/modelrollout --version 1.2.3" in text
    assert "pipx install modelrollout-operator==1.2.3" in text
    assert ("--certificate-identity https://github.com/acme/modelrollout/.github/workflows/release.yml"
            "@refs/tags/v1.2.3") in text


@pytest.mark.parametrize("missing", ["OPERATOR_DIGEST", "SERVER_DIGEST", "CHART_DIGEST"])
def test_release_notes_without_a_pushed_digest_are_refused(missing: str) -> None:
    out = _notes("v1.2.3", {**DIGESTS, missing: ""})
    assert out.returncode == 1 and f"{missing}='' is not sha256" in out.stderr, out.stderr
    assert out.stdout == ""
