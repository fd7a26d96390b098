"""`kubectl modelrollout` against the local cluster, as a CI pipeline and a person use it: list, get
with the version tree, set model, status --timeout with its exit codes, json/yaml output, version."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.conftest import ClusterHandle
from tests.e2e.rollouts import OperatorProcess, Scenario, make_rollout

pytestmark = pytest.mark.e2e
WRONG_DIGEST = "sha256:" + "0" * 64


def plugin(cluster: ClusterHandle, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelrollout.cli", *args, "--kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=timeout)


def test_plugin_lists_shows_sets_and_waits_with_exit_codes(
        cluster: ClusterHandle, namespace: str, operator: OperatorProcess, models: dict[str, Any],
        model_store: str) -> None:
    s = Scenario(cluster, namespace, "cli")
    lr = models["models"]["lr"]
    s.apply(make_rollout(s.name, "1", lr, model_store, replicas=2))
    waited = plugin(cluster, "status", s.name, "-n", namespace, "--timeout", "2m")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "Phase:       Healthy" in waited.stdout

    listed = plugin(cluster, "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    assert row.split()[:6] == ["cli", "cli", "1", "-", "-", "Healthy"]
    everywhere = json.loads(plugin(cluster, "list", "-A", "-o", "json").stdout)
    assert (namespace, "cli") in {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]}

    tree = plugin(cluster, "get", s.name, "-n", namespace)
    assert tree.returncode == 0, tree.stderr
    assert "v1 (stable)  deployment/" in tree.stdout and "2/2 ready" in tree.stdout, tree.stdout
    assert tree.stdout.count("    pod/") == 2 and "Ready  restarts 0" in tree.stdout, tree.stdout
    as_yaml = yaml.safe_load(plugin(cluster, "get", s.name, "-n", namespace, "-o", "yaml").stdout)
    assert as_yaml["status"]["stableVersion"] == "1"

    # A version whose file does not match its digest is rolled back: status --timeout exits 1.
    set_bad = plugin(cluster, "set", "model", s.name, "-n", namespace, "--version", "2",
                     "--uri", f"{model_store}/{lr['file']}", "--digest", WRONG_DIGEST)
    assert set_bad.returncode == 0 and "version 2" in set_bad.stdout, set_bad.stderr
    rolled_back = plugin(cluster, "status", s.name, "-n", namespace, "--timeout", "2m")
    assert rolled_back.returncode == 1, rolled_back.stdout + rolled_back.stderr
    assert "RolledBack" in rolled_back.stdout

    # A good version takes its steps: a short timeout exits 2, a long one 0 once it is promoted.
    assert plugin(cluster, "set", "model", s.name, "-n", namespace, "--version", "3",
                  "--uri", f"{model_store}/{lr['file']}", "--digest", lr["digest"]).returncode == 0
    too_short = plugin(cluster, "status", s.name, "-n", namespace, "--timeout", "1s")
    assert too_short.returncode == 2 and "did not finish within 1s" in too_short.stderr, too_short.stderr
    promoted = plugin(cluster, "status", s.name, "-n", namespace, "--timeout", "3m")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert s.status()["stableVersion"] == "3"

    missing = plugin(cluster, "get", "nope", "-n", namespace)
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: 404 Not Found: modelrollout {namespace}/nope"
    assert "Traceback" not in missing.stderr
