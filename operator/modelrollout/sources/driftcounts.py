"""The drift watch's evidence: each watched version's live inputs per reference bin over a sliding window.

The model server counts every input value into the bins of its model's training reference and exports the
reference beside the counts (docs/metrics.md, *Drift counting*). At each look this reads the ready pods of the
watched versions, keeps each pod's readings in memory for one window (analysis/driftwindow.py turns them into
the window's increase, counter resets included) and sums the pods of a version. After an operator restart the
window starts again: the first looks cover less than `window` (status.drift says how much), and
`minSamples` keeps a thin window from being judged. A version with a pod that cannot be read is not judged
at that look (its readable pods keep their readings), never judged on the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from modelrollout.analysis.driftwindow import Reading, kept, window_increase
from modelrollout.core.observations import DriftObservation, VersionDrift
from modelrollout.kube import PodTarget
from modelrollout.sources.podscrape import SCRAPE_TIMEOUT, scrape
from modelserver.contract import DriftReferenceState
from modelserver.contract_parse import DriftMetrics, parse_drift_metrics, parse_pod_metrics

Labels = dict[tuple[str, int], float]  # (version, 1: correct / 0: incorrect) -> feedback labels counted by a pod


@dataclass(frozen=True)
class DriftRequest:
    key: str  # namespace/name of the rollout
    model: str
    versions: tuple[str, ...]
    pods: Sequence[PodTarget]  # ready pods of the rollout
    port: int
    path: str
    window_seconds: float


@dataclass
class DriftWindows:
    """Each watched pod's recent readings, by rollout and pod uid (memory only)."""

    readings: dict[str, dict[str, list[Reading]]] = field(default_factory=dict)
    # Feedback labels by the version that predicted, per pod (a label counts on whichever pod it reached), for
    # spec.monitoring.retrain.minAccuracy: the same window over the modelserver_feedback_total counters.
    labels: dict[str, dict[str, list[Reading]]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    timeout: float = SCRAPE_TIMEOUT

    def forget(self, key: str) -> None:
        self.readings.pop(key, None)
        self.labels.pop(key, None)

    async def look(self, req: DriftRequest) -> DriftObservation:
        pods = [p for p in req.pods if p.version in req.versions]
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(self._read(session, req, p) for p in pods))
        now = self.clock()
        mine = self.readings.setdefault(req.key, {})
        labelled = self.labels.setdefault(req.key, {})
        for memory in (mine, labelled):
            for pod in list(memory):
                if pod not in {p.uid for p in pods}:
                    del memory[pod]  # gone: its counts leave the window with it
        drift = [r if isinstance(r, str) else r[0] for r in results]
        labels = self._labels(req, pods, results, labelled, now)
        return DriftObservation(tuple(
            dataclasses.replace(self._version(req, v, pods, drift, mine, now), labels_correct=labels.get((v, 1), 0.0),
                                labels_incorrect=labels.get((v, 0), 0.0))
            for v in req.versions))

    @staticmethod
    def _labels(req: DriftRequest, pods: Sequence[PodTarget], results: Sequence[tuple[DriftMetrics, Labels] | str],
                labelled: dict[str, list[Reading]], now: float) -> Labels:
        """Each watched version's labels in the window, summed over the pods that could be read."""
        total: Labels = {}
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, str):
                continue
            labelled[pod.uid] = kept([*labelled.get(pod.uid, []), Reading(now, result[1])], now, req.window_seconds)
            for k, n in window_increase(labelled[pod.uid], now, req.window_seconds)[0].items():
                total[k] = total.get(k, 0.0) + n
        return total

    async def _read(self, session: aiohttp.ClientSession, req: DriftRequest,
                    pod: PodTarget) -> tuple[DriftMetrics, Labels] | str:
        try:
            text = await scrape(session, f"http://{pod.ip}:{req.port}{req.path}", self.timeout)
            found = parse_drift_metrics(text).get((req.model, pod.version))
            served = parse_pod_metrics(text)
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
            return f"pod {pod.name} could not be read ({type(exc).__name__}: {exc or 'timeout'})"
        labels: Labels = {}
        for version in req.versions:
            m = served.model(req.model, version)
            if m is not None:
                labels[version, 1], labels[version, 0] = m.feedback_correct, m.feedback_incorrect
        return (found if found is not None else DriftMetrics()), labels

    @staticmethod
    def _version(req: DriftRequest, version: str, pods: Sequence[PodTarget], results: Sequence[DriftMetrics | str],
                 mine: dict[str, list[Reading]], now: float) -> VersionDrift:
        own = [(p, r) for p, r in zip(pods, results, strict=True) if p.version == version]
        if not own:
            return VersionDrift(version, problem="no ready pod to read")
        problems = [r for _, r in own if isinstance(r, str)]
        metrics = [(p, r) for p, r in own if not isinstance(r, str)]
        for pod, m in metrics:  # readable pods keep their readings even when another one failed
            if m.state == DriftReferenceState.LOADED.value:
                mine[pod.uid] = kept([*mine.get(pod.uid, []), Reading(now, m.live)], now, req.window_seconds)
        if problems:
            return VersionDrift(version, problem=problems[0])
        unusable = [m.state for _, m in metrics if m.state != DriftReferenceState.LOADED.value]
        if unusable:
            return VersionDrift(version, state=unusable[0] or "none exported")
        return _summed(version, [m for _, m in metrics], [mine[p.uid] for p, _ in metrics], now, req.window_seconds)


def _summed(version: str, metrics: list[DriftMetrics], readings: list[list[Reading]], now: float,
            window: float) -> VersionDrift:
    """The version's window: each pod's increase, summed per (feature, bin) in the reference's order."""
    reference: dict[str, list[int]] = {}
    for (feature, b), rows in metrics[0].reference.items():
        bins = reference.setdefault(feature, [])
        bins.extend([0] * (b + 1 - len(bins)))
        bins[b] = int(rows)
    live = {feature: [0.0] * len(bins) for feature, bins in reference.items()}
    covered = 0.0
    for pod in readings:
        counts, seconds = window_increase(pod, now, window)
        covered = max(covered, seconds)
        for (feature, b), n in counts.items():
            if feature in live and 0 <= b < len(live[feature]):
                live[feature][b] += n
    return VersionDrift(version, state=DriftReferenceState.LOADED.value,
                        reference=tuple((f, tuple(bins)) for f, bins in reference.items()),
                        live={f: tuple(v) for f, v in live.items()}, window_seconds=covered)
