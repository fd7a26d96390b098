"""The `pods` metric source: scrape every ready serving pod's /metrics concurrently.

Baselines (each pod's previous cumulative counters) live in memory. After an operator restart the
first look only records baselines and yields no tick: counting pods' whole history again would
count requests twice. A pod first seen later contributes everything only if it started after the
previous look (its counters began at zero since then); otherwise its first scrape is a baseline.
A failed scrape keeps the old baseline, so the next success covers the gap; a version any of whose
ready pods could not be read is missing from that tick (Inconclusive), never judged on the rest.

Feedback is counted for the version that made the prediction, on whichever pod the label arrived
(prediction tokens, docs/metrics.md): a version's feedback is the sum of its feedback series over the
pods of *both* versions. Those series appear in a pod only with its first such label, so one first seen
in a pod that already had a baseline started from zero since the previous look and counts in full.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

import aiohttp

from modelrollout.analysis.types import Tick, VersionCounts
from modelrollout.kube import PodTarget
from modelrollout.sources import ScrapeRequest
from modelrollout.sources.foreignmetrics import pod_metrics as foreign_pod_metrics
from modelrollout.sources.increments import pod_increment, sum_counts
from modelserver.contract_parse import ModelMetrics, PodMetrics, parse_pod_metrics

SCRAPE_TIMEOUT = 2.0


@dataclass
class _Baselines:
    # (pod uid, version) -> last counters; a pod's other version has its feedback series only
    pods: dict[tuple[str, str], ModelMetrics] = field(default_factory=dict)
    last_look: float | None = None  # wall-clock seconds of the previous look
    last_look_mono: float | None = None


async def scrape(session: aiohttp.ClientSession, url: str, timeout: float) -> str:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        return await resp.text()


def _started_after(pod: PodTarget, moment: float | None) -> bool:
    if moment is None or pod.started_at is None:
        return False
    return datetime.fromisoformat(pod.started_at).timestamp() >= moment


def _foreign(text: str, req: ScrapeRequest, pod: PodTarget) -> PodMetrics:
    """Another server's page as PodMetrics of the pod's own version (it has no feedback from tokens)."""
    own = foreign_pod_metrics(text, req.server, req.model, pod.version)
    return PodMetrics(models=MappingProxyType({} if own is None else {(req.model, pod.version): own}))


class PodScrapeSource:
    def __init__(self, timeout: float = SCRAPE_TIMEOUT) -> None:
        self.timeout = timeout
        self.state: dict[str, _Baselines] = {}

    def forget(self, key: str) -> None:
        self.state.pop(key, None)

    def has_baseline(self, key: str) -> bool:
        return key in self.state

    async def _read(self, session: aiohttp.ClientSession, req: ScrapeRequest,
                    pod: PodTarget) -> PodMetrics | str:
        try:
            text = await scrape(session, f"http://{pod.ip}:{req.port}{req.server.path}", self.timeout)
            found = parse_pod_metrics(text) if req.server.is_own_server else _foreign(text, req, pod)
            if found.model(req.model, pod.version) is None:
                return f"pod {pod.name}: no series for model {req.model} v{pod.version}"
            return found
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
            return f"pod {pod.name}: scrape failed ({type(exc).__name__}: {exc or 'timeout'})"

    async def observe(self, req: ScrapeRequest) -> Tick | None:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(self._read(session, req, p) for p in req.pods))
        base = self.state.setdefault(req.key, _Baselines())
        first_look = base.last_look is None
        parts: dict[str, list[VersionCounts]] = {req.canary_version: [], req.stable_version: []}
        errors = [r for r in results if isinstance(r, str)]
        # A version with an unreadable pod is not observed this tick: the unread pod may be the one
        # misbehaving, so the others' counts alone must not pass (or fail) it. Its readable pods keep
        # their baselines, so the next complete read covers the gap.
        blind = {pod.version for pod, result in zip(req.pods, results, strict=True) if isinstance(result, str)}
        for pod, result in zip(req.pods, results, strict=True):
            if isinstance(result, str) or pod.version in blind:
                continue
            self._add_pod(req, base, pod, result, parts)
        now_mono = time.monotonic()
        duration = None if base.last_look_mono is None else now_mono - base.last_look_mono
        base.last_look, base.last_look_mono = time.time(), now_mono
        for version in blind:
            parts[version] = []
        seen = {p.uid for p in req.pods}
        base.pods = {key: m for key, m in base.pods.items() if key[0] in seen}
        if first_look:
            return None
        return self._tick(req, parts, errors, duration)

    @staticmethod
    def _add_pod(req: ScrapeRequest, base: _Baselines, pod: PodTarget, metrics: PodMetrics,
                 parts: dict[str, list[VersionCounts]]) -> None:
        """The pod's increments: all of its own version's, and the feedback it scored for the other one."""
        known_pod = (pod.uid, pod.version) in base.pods
        fresh = _started_after(pod, base.last_look)
        for version in {pod.version, req.canary_version, req.stable_version}:
            now = metrics.model(req.model, version)
            if now is None:
                continue
            before = base.pods.get((pod.uid, version))
            base.pods[pod.uid, version] = now
            if before is None and not fresh and (version == pod.version or not known_pod):
                continue  # baseline only: its history may be counted already
            increment = pod_increment(before, now)
            # Only the feedback a pod scored for another version is that version's; it is not its pod.
            parts.setdefault(version, []).append(increment if version == pod.version else
                                                 dataclasses.replace(increment, pods=0))

    @staticmethod
    def _tick(req: ScrapeRequest, parts: dict[str, list[VersionCounts]], errors: list[str],
              duration: float | None) -> Tick:
        canary_pods = sum(1 for p in req.pods if p.version == req.canary_version)
        stable_pods = sum(1 for p in req.pods if p.version == req.stable_version)
        for version, count in ((req.canary_version, canary_pods), (req.stable_version, stable_pods)):
            if count == 0:
                errors.append(f"version {version} has no ready pods to scrape")
        total = canary_pods + stable_pods
        return Tick(
            canary=sum_counts(parts[req.canary_version]), stable=sum_counts(parts[req.stable_version]),
            expected_canary_share=canary_pods / total if total else 0.0,
            errors=tuple(errors), duration_seconds=duration,
        )
