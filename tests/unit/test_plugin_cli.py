"""The plugin's parser, help and pure views (no cluster)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelrollout import cli

pytestmark = pytest.mark.unit


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelrollout.cli", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("command", ["list", "get", "status", "set", "promote", "abort", "version"])
def test_every_subcommand_has_its_own_help(command: str) -> None:
    done = run(command, "--help")
    assert done.returncode == 0 and f"kubectl modelrollout {command}" in done.stdout, done.stdout


def test_version_needs_no_cluster() -> None:
    done = run("version")
    assert done.returncode == 0 and done.stdout.startswith("kubectl-modelrollout "), done.stdout


def rollout(phase: str, stable: str, version: str = "2", generation: int = 3, observed: int = 3) -> dict[str, object]:
    return {"metadata": {"name": "fraud", "namespace": "ml", "generation": generation,
                         "creationTimestamp": "2026-12-07T00:00:00Z"},
            "spec": {"model": {"name": "fraud", "version": version}},
            "status": {"phase": phase, "stableVersion": stable, "observedGeneration": observed, "desiredWeight": 25}}


def test_status_timeout_outcome_waits_for_the_operator_to_see_the_spec() -> None:
    assert cli.outcome(rollout("Healthy", "2")) == 0
    assert cli.outcome(rollout("Healthy", "1")) is None  # the new version has not been promoted
    assert cli.outcome(rollout("Healthy", "2", observed=2)) is None  # an older spec's Healthy
    assert cli.outcome(rollout("RolledBack", "1")) == cli.EXIT_ROLLED_BACK
    assert cli.outcome(rollout("Failed", "1")) == cli.EXIT_ROLLED_BACK
    assert cli.outcome(rollout("Progressing", "1")) is None


def test_list_table_aligns_columns_and_shows_namespaces_with_all() -> None:
    table = cli.render_table([rollout("Progressing", "1")], all_namespaces=True, wide=False).splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    assert table[1].split()[:7] == ["ml", "fraud", "fraud", "1", "-", "25%", "Progressing"]
    assert table[0].index(" NAME ") + 1 == table[1].index("fraud")
