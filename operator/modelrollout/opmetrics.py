"""The operator's own Prometheus metrics (served on a port of its own, see main.py).

Label values are rollout namespaces/names, metric names from specs and enum values: never
request content.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from modelrollout.core.observations import Decision
from modelrollout.core.phases import Phase

PHASE = Gauge("modelrollout_phase", "1 for the rollout's current phase, 0 for the others",
              ["namespace", "rollout", "phase"])
# Ratios 0-1, Prometheus's base unit (until 0.1.0 these were *_weight_percent, 0-100; docs/metrics.md).
DESIRED_WEIGHT = Gauge("modelrollout_desired_weight_ratio", "Canary weight the current step asks for (0-1)",
                       ["namespace", "rollout"])
EFFECTIVE_WEIGHT = Gauge("modelrollout_effective_weight_ratio",
                         "Share of requests the canary really served in the last analysis window (0-1)",
                         ["namespace", "rollout"])
VERDICTS = Counter("modelrollout_analysis_verdicts_total", "Analysis verdicts per metric",
                   ["namespace", "rollout", "metric", "verdict"])
RECONCILE_SECONDS = Histogram("modelrollout_reconcile_duration_seconds", "Duration of one reconcile tick",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RECONCILE_ERRORS = Counter("modelrollout_reconcile_errors_total", "Reconcile ticks that raised", ["reason"])
# Label values: the rollout, its version and the feature names of that version's drift reference (the model's
# own file, bounded by the server's MODELSERVER_DRIFT_MAX_SERIES), never request content.
DRIFT_PSI = Gauge("modelrollout_drift_psi",
                  "Population stability index of a feature's live inputs in the drift window against the training "
                  "reference (spec.monitoring.drift), at the last look that judged it",
                  ["namespace", "rollout", "version", "feature"])
_drift_series: dict[tuple[str, str], set[tuple[str, str]]] = {}
NOTIFICATIONS = Counter("modelrollout_notifications_total", "Webhook messages by outcome (sent, failed, dropped)",
                        ["outcome"])

# Where a tick's time goes: the API server's answer, the wait for a free worker thread, the wait for
# the event loop, the pods' /metrics. Verbs and resources are the adapter's own constants.
_FINE = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
API_SECONDS = Histogram("modelrollout_api_request_duration_seconds",
                        "Duration of one Kubernetes API call made by the operator", ["verb", "resource"],
                        buckets=_FINE)
QUEUE_SECONDS = Histogram("modelrollout_api_queue_wait_seconds",
                          "Time a blocking API call waited for a free worker thread", buckets=_FINE)
LOOP_LAG_SECONDS = Histogram("modelrollout_event_loop_lag_seconds",
                             "How late the operator's event loop ran a 0.25 s sleep", buckets=_FINE)
# A scheduled tick's wake-up time to its status write: the timer's 1 s period, the event loop's backlog and
# the tick's own calls together (make bench-operator's target: p99 under 2 s at 500 rollouts).
TICK_LATENESS_SECONDS = Histogram(
    "modelrollout_tick_lateness_seconds",
    "Time from a scheduled tick being due to its status write (ticks woken by their decided wake-up time)",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30))
# A tick in three stages, so a slow tick says which: "observe" (the pods, objects and metrics, read together),
# "decide" (the pure core), "act" (the writes, then the status).
TICK_STAGE_SECONDS = Histogram("modelrollout_tick_stage_seconds", "Duration of one stage of a reconcile tick",
                               ["stage"], buckets=_FINE)
SCRAPE_SECONDS = Histogram("modelrollout_scrape_duration_seconds",
                           "Duration of reading one rollout's pods' /metrics in an analysis tick", buckets=_FINE)


def record_decision(body: dict[str, Any], decision: Decision) -> None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    st = decision.status
    for phase in Phase:
        PHASE.labels(ns, name, phase.value).set(1 if st.phase == phase else 0)
    DESIRED_WEIGHT.labels(ns, name).set((st.desired_weight or 0) / 100)
    if st.effective_weight is not None:
        EFFECTIVE_WEIGHT.labels(ns, name).set(st.effective_weight / 100)
    record_drift(ns, name, [] if st.drift is None else st.drift.versions)


def record_drift(ns: str, name: str, versions: list[dict[str, Any]]) -> None:
    """One PSI series per judged (version, feature); those of versions no longer watched go."""
    now = {(v["version"], f["name"]): float(f["psi"]) for v in versions for f in v.get("features", ())
           if f.get("samples")}
    for version, feature in _drift_series.get((ns, name), set()) - set(now):
        with contextlib.suppress(KeyError):
            DRIFT_PSI.remove(ns, name, version, feature)
    for (version, feature), value in now.items():
        DRIFT_PSI.labels(ns, name, version, feature).set(value)
    _drift_series[ns, name] = set(now)


def observe_tick_lateness(due: datetime | None, started: datetime, written: datetime) -> None:
    """Count a tick that its decided wake-up time `due` started (`started` >= `due`): its lateness is
    `written - due`. Ticks started early by a spec change or a command, or the first after a restart
    (no `due`), have no due time to be late against and are not counted."""
    if due is not None and started >= due:
        TICK_LATENESS_SECONDS.observe(max(0.0, (written - due).total_seconds()))


def forget(namespace: str, name: str) -> None:
    """Drop a deleted rollout's series (remove() raises KeyError for a series never set)."""
    for phase in Phase:
        with contextlib.suppress(KeyError):
            PHASE.remove(namespace, name, phase.value)
    for gauge in (DESIRED_WEIGHT, EFFECTIVE_WEIGHT):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    record_drift(namespace, name, [])
    _drift_series.pop((namespace, name), None)
