"""The CI pipeline of examples/ci on the local cluster: the scripts the two workflows call, in the
workflows' order, with the local cluster in kind's place (the store reached at its ClusterIP instead
of through `kubectl port-forward`). A better model passes the pull-request check and the push pipeline
ends with exit 0, Healthy at the new version; a regressed model fails the check naming the metric and,
pushed anyway, the pipeline exits 1 printing why the rollout was rolled back."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from localcluster.binaries import bin_dir
from localcluster.testing import wait_until
from tests.conftest import ROOT, ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario

pytestmark = pytest.mark.e2e
CI = ROOT / "examples" / "ci"
# Not run here: they need GitHub (github-output) or download kind, kubectl and helm (install-tools,
# whose checksum check tests/unit/test_ci_workflows.py runs).
GITHUB_ONLY = {"github-output", "install-tools"}
NAME = "fraud"


def workflow_scripts(workflow: str) -> list[str]:
    """The steps/*.sh each step of a workflow runs, in order: what the pipeline below must repeat."""
    doc = yaml.safe_load((CI / "workflows" / workflow).read_text())
    found = [m for job in doc["jobs"].values() for step in job["steps"]
             for m in re.findall(r"steps/([\w-]+)\.sh", str(step.get("run", "")))]
    return [s for s in found if s not in GITHUB_ONLY]


def checkout(tmp: Path, name: str, params: dict[str, Any] | None) -> Path:
    """A copy of examples/ci as one commit has it; `params` is what that commit's params.yaml says."""
    project = tmp / name / "examples" / "ci"
    shutil.copytree(CI, project)
    if params is not None:
        (project / "model" / "params.yaml").write_text(yaml.safe_dump(params))
    return project


@dataclass
class Pipeline:
    cluster: ClusterHandle
    namespace: str
    work: Path
    ran: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        path = os.pathsep.join([str(bin_dir()), str(Path(sys.executable).parent), os.environ["PATH"]])
        self.env = dict(os.environ, PATH=path, KUBECONFIG=str(self.cluster.kubeconfig), NAMESPACE=self.namespace,
                        MODEL_NAME=NAME, PYTHON=sys.executable, STORE_TOKEN=secrets.token_hex(24),
                        STORE_URL="http://model-store", ROLLOUT_TIMEOUT="6m")

    def run(self, script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        self.ran.append(script)
        out = subprocess.run([str(CI / "steps" / f"{script}.sh"), *map(str, args)], capture_output=True, text=True,
                             env=self.env, cwd=self.work, timeout=600)
        print(f"--- {script} {' '.join(map(str, args))}: exit {out.returncode}\n{out.stdout}{out.stderr}")
        return out

    def step(self, script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        out = self.run(script, *args)
        assert out.returncode == 0, f"{script}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
        return out

    def pull_request(self, base: Path, head: Path) -> subprocess.CompletedProcess[str]:
        """model-pr.yml: train both, validate; the validate step's result is the check's."""
        self.ran.clear()
        self.step("train", base, "check/baseline")
        self.step("train", head, "check/candidate")
        checked = self.run("validate", "check/baseline", "check/candidate", "check/report",
                           head / "model" / "validation.yaml")
        assert self.ran == workflow_scripts("model-pr.yml")
        return checked

    def push(self, base: Path, head: Path) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        """model-main.yml after the kind set-up: (validate, the final wait). A failed validation goes on
        only as the workflow's deploy-despite-failed-validation does; the wait's exit is the job's."""
        self.ran.clear()
        self.step("store-up")
        self.env["STORE_UPLOAD_URL"] = self._store_url()  # the kind workflow port-forwards instead
        self.step("train", base, "out/baseline")
        self.step("train", head, "out/candidate")
        validated = self.run("validate", "out/baseline", "out/candidate", "out/report",
                             head / "model" / "validation.yaml")
        self.step("publish", "out/baseline", "1")
        self.step("publish", "out/candidate", "2")
        self.step("deploy", "out/baseline")
        self.step("wait")
        self.step("traffic", "out/baseline")
        self.step("deploy", "out/candidate")
        verdict = self.run("wait")
        assert self.ran == workflow_scripts("model-main.yml")
        return validated, verdict

    def _store_url(self) -> str:
        svc = kubernetes.client.CoreV1Api(self.cluster.api).read_namespaced_service("model-store", self.namespace)
        return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}"


@pytest.fixture
def pipeline(cluster: ClusterHandle, namespace: str, operator: OperatorProcess, tmp_path: Path) -> Pipeline:
    return Pipeline(cluster, namespace, tmp_path)


# Two pipelines with two rollouts each: more than the suite's 600 s per test on a loaded machine.
@pytest.mark.timeout(900)
def test_a_better_model_passes_the_check_and_is_promoted_by_the_push_pipeline(
        pipeline: Pipeline, tmp_path: Path) -> None:
    # Given main trains a logistic regression and the pull request a random forest (the committed params)
    base = checkout(tmp_path, "main", {"estimator": "logisticRegression", "hyperparameters": {"max_iter": 1000}})
    head = checkout(tmp_path, "pr", None)

    # When the pull-request pipeline runs, then the check passes with every check in the report
    check = pipeline.pull_request(base, head)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "### Model validation: passed" in check.stdout
    assert "| maxRegression.accuracy | overall | 0.92 | 0.9 |" in check.stdout

    # When it is merged and the push pipeline runs, then it ends with exit 0, Healthy at the new version
    validated, verdict = pipeline.push(base, head)
    assert validated.returncode == 0
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "Phase:       Healthy" in verdict.stdout
    status = Scenario(pipeline.cluster, pipeline.namespace, NAME).status()
    assert (status["phase"], status["stableVersion"]) == ("Healthy", "2"), status
    published = (tmp_path / "out" / "candidate" / "published.env").read_text()
    rollout = Scenario(pipeline.cluster, pipeline.namespace, NAME).get()["spec"]["model"]
    assert f"MODEL_DIGEST={rollout['digest']}" in published and rollout["uri"].endswith("/fraud/2/model.skops")
    # And the drift reference was published beside the model with its digest: the new version is watched
    assert f"DRIFT_REFERENCE_DIGEST={rollout['driftReferenceDigest']}" in published

    def watched() -> dict[str, Any] | None:
        versions = (Scenario(pipeline.cluster, pipeline.namespace, NAME).status().get("drift") or {}).get("versions")
        return next((v for v in versions or () if v["version"] == "2"), None)

    drift = wait_until(watched, 90, "the drift watch to look at version 2", interval=1)
    assert drift["state"] != "NotAvailable", drift


@pytest.mark.timeout(900)
def test_a_regressed_model_fails_the_check_and_pushed_anyway_is_rolled_back_with_the_reason(
        pipeline: Pipeline, tmp_path: Path) -> None:
    # Given the pull request breaks the label join: half the training labels are flipped
    base = checkout(tmp_path, "main", None)
    head = checkout(tmp_path, "pr", {"estimator": "randomForest", "hyperparameters": {"n_estimators": 50},
                                     "labelNoise": 0.5})

    # When the pull-request pipeline runs, then the check fails naming the metric
    check = pipeline.pull_request(base, head)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "### Model validation: FAILED" in check.stdout
    failed = re.search(r"\| minAccuracy \| overall \| 0\.[0-6]\d* \| 0\.92 \| 0\.85 \| ❌ Fail \|", check.stdout)
    assert failed, check.stdout

    # When it is pushed anyway (deploy-despite-failed-validation), then validation fails again, the
    # canary is rolled back on its accuracy, and the pipeline exits 1 printing why
    validated, verdict = pipeline.push(base, head)
    assert validated.returncode == 1
    assert verdict.returncode == 1, verdict.stdout + verdict.stderr
    last = verdict.stdout.strip().splitlines()[-1]
    assert last.startswith(f"rollout {pipeline.namespace}/{NAME} did not promote (exit 1): RolledBack (version 2, "
                           "stable 1): "), last
    assert "accuracy" in last, last
    status = Scenario(pipeline.cluster, pipeline.namespace, NAME).status()
    assert (status["phase"], status["stableVersion"]) == ("RolledBack", "1"), status
