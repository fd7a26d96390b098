"""The Grafana dashboard shipped in the chart, generated from the metric names defined once
(modelserver.contract for the serving pods, opmetrics for the operator), so a renamed metric cannot
leave a panel silently empty.

    python -m modelrollout.dashboard > charts/modelrollout/dashboards/modelrollout.json

tests/unit/test_dashboard.py fails when the committed file differs from this output, and parses every
expression with Prometheus's own parser (promtool); tests/e2e/test_prometheus_source.py evaluates every
expression against a real Prometheus during a rollout and fails on an empty panel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelrollout import opmetrics
from modelserver import contract as c

UID = "modelrollout"
RATE = "$__rate_interval"
ROLLOUT = 'namespace=~"$namespace", rollout=~"$rollout"'
MODEL = 'namespace=~"$namespace", model=~"$model"'


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (expression, legend)
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"


def _name(metric: Any) -> str:
    return str(metric._name)  # prometheus_client's family name, as exported


def _per_version(metric: str, selector: str = "") -> str:
    inner = f"{MODEL}, {selector}" if selector else MODEL
    return f"sum by (version) (rate({metric}{{{inner}}}[{RATE}]))"


def _requests() -> str:
    return _per_version(c.REQUESTS.sample)


def panels() -> list[Panel]:
    reconcile = _name(opmetrics.RECONCILE_SECONDS)
    errors_5xx = _per_version(c.REQUESTS.sample, 'code=~"5.."')
    correct = _per_version(c.FEEDBACK.sample, f'{c.OUTCOME}="{c.FeedbackOutcome.CORRECT.value}"')
    judged = _per_version(c.FEEDBACK.sample, f'{c.OUTCOME}=~"{c.FeedbackOutcome.CORRECT.value}|'
                                             f'{c.FeedbackOutcome.INCORRECT.value}"')
    return [
        Panel("Rollout phase", ((f"{_name(opmetrics.PHASE)}{{{ROLLOUT}}} == 1", "{{rollout}}: {{phase}}"),),
              description="The phase each rollout is in (1 = current).", kind="table"),
        Panel("Canary weight: desired vs effective",
              ((f"{_name(opmetrics.DESIRED_WEIGHT)}{{{ROLLOUT}}}", "{{rollout}} desired"),
               (f"{_name(opmetrics.EFFECTIVE_WEIGHT)}{{{ROLLOUT}}}", "{{rollout}} effective")), unit="percentunit",
              description="What the step asks for, and the share the canary really served."),
        Panel("Requests per second by version", ((_requests(), "v{{version}}"),), unit="reqps"),
        # `or ... * 0`: a version without a single 5xx shows 0, not a gap.
        Panel("Error ratio (5xx) by version",
              (((f"({errors_5xx} or {_requests()} * 0) / {_requests()}"), "v{{version}}"),), unit="percentunit",
              description="Client disconnects (499) are not errors."),
        Panel("p99 latency by version",
              ((f"histogram_quantile(0.99, sum by (version, le) (rate({c.REQUEST_DURATION.name}_bucket{{{MODEL}}}"
                f"[{RATE}])))", "v{{version}}"),), unit="s"),
        Panel("Accuracy from feedback labels by version", ((f"{correct} / {judged}", "v{{version}}"),),
              unit="percentunit"),
        Panel("Analysis verdicts",
              ((f"sum by (rollout, metric, verdict) (increase({_name(opmetrics.VERDICTS)}_total{{{ROLLOUT}}}"
                f"[{RATE}]))", "{{rollout}} {{metric}}: {{verdict}}"),),
              description="Verdicts per analysis metric in each interval."),
        Panel("Operator: ticks per second and p99 tick duration",
              ((f"sum(rate({reconcile}_count[{RATE}]))", "ticks/s"),
               (f"histogram_quantile(0.99, sum by (le) (rate({reconcile}_bucket[{RATE}])))", "p99 s")),
              description="How often and how long the operator reconciles."),
        Panel("Operator: failed ticks",
              ((f"sum by (reason) (rate({_name(opmetrics.RECONCILE_ERRORS)}_total[{RATE}])) or vector(0)",
                "{{reason}}"),), description="Forbidden: a missing RBAC rule; Conflict: an object owned by "
                                             "someone else; ApiError: anything else (see the Events)."),
    ]


def expressions() -> list[str]:
    return [expr for panel in panels() for expr, _ in panel.exprs]


def _variable(name: str, query: str) -> dict[str, Any]:
    return {"name": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": name}, "refresh": 2, "includeAll": True, "multi": True,
            "allValue": ".*", "current": {"text": "All", "value": "$__all"}}


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    return {"id": index + 1, "type": panel.kind, "title": panel.title, "description": panel.description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "targets": [{"expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
                         **({"instant": True, "format": "table"} if panel.kind == "table" else {})}
                        for i, (expr, legend) in enumerate(panel.exprs)]}


def dashboard() -> dict[str, Any]:
    return {
        "uid": UID, "title": "ModelRollout", "tags": ["modelrollout"], "schemaVersion": 39, "version": 1,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "editable": True,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
            _variable("namespace", f"label_values({_name(opmetrics.PHASE)}, namespace)"),
            _variable("rollout", f'label_values({_name(opmetrics.PHASE)}{{namespace=~"$namespace"}}, rollout)'),
            _variable("model", f'label_values({c.REQUESTS.sample}{{namespace=~"$namespace"}}, model)'),
        ]},
        "panels": [_panel(i, p) for i, p in enumerate(panels())],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
