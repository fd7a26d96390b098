"""The Grafana dashboard in the chart: generated from the shared metric names, every expression
accepted by Prometheus's own parser (promtool), shipped as a sidecar ConfigMap only when asked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from localcluster.binaries import MissingBinaryError, prometheus_binary
from modelrollout import dashboard
from tests.conftest import ROOT
from tests.unit.test_chart import render

pytestmark = pytest.mark.unit
SHIPPED = ROOT / "charts" / "modelrollout" / "dashboards" / "modelrollout.json"


def promtool() -> Path:
    try:
        return prometheus_binary("promtool")
    except MissingBinaryError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"promtool is required in CI: {exc}", pytrace=False)
        pytest.skip(f"{exc}")


def concrete(expr: str) -> str:
    """What Grafana sends: its variables replaced (all values of a multi-value variable: `.*`)."""
    for variable in ("$namespace", "$rollout", "$model"):
        expr = expr.replace(variable, ".*")
    return expr.replace("$__rate_interval", "1m")


def test_the_shipped_dashboard_is_the_generated_one() -> None:
    assert SHIPPED.read_text() == dashboard.render(), (
        "regenerate: python -m modelrollout.dashboard > charts/modelrollout/dashboards/modelrollout.json")


def test_every_panel_has_an_expression_and_the_issue_s_subjects_are_covered() -> None:
    titles = " ".join(p.title for p in dashboard.panels()).lower()
    for subject in ("phase", "desired vs effective", "requests per second", "error", "p99", "accuracy",
                    "verdicts", "operator"):
        assert subject in titles, subject
    board = json.loads(SHIPPED.read_text())
    assert all(panel["targets"] and all(t["expr"] for t in panel["targets"]) for panel in board["panels"])


def test_promtool_parses_every_expression(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": concrete(expr)} for i, expr in enumerate(dashboard.expressions())]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(dashboard.expressions())} rules found" in out.stdout, out.stdout


def test_a_broken_expression_is_refused_by_the_same_check(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (version) (rate(modelserver_requests_total[1m])"}]}]}))
    out = subprocess.run([str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0


def test_the_chart_ships_the_dashboard_as_a_sidecar_configmap_only_when_enabled() -> None:
    assert not [d for d in render() if d["kind"] == "ConfigMap"]
    [cm] = [d for d in render("metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.folder=ML")
            if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "ML"}
    assert json.loads(cm["data"]["modelrollout.json"]) == json.loads(SHIPPED.read_text())
