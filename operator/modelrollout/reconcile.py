"""One reconcile tick: gather a snapshot, decide (pure core), act through the adapter.

    decision = await tick(ctx, body, now)

The kopf timer is the only caller, so this is the only writer of a rollout's progress. Blocking
Kubernetes calls go to threads; scraping is asyncio.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modelrollout import opmetrics
from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.state import AnalysisState
from modelrollout.analysis.types import Tick
from modelrollout.core.commands import COMMAND_ID_ANNOTATION
from modelrollout.core.decide import decide_from_dicts
from modelrollout.core.observations import AnalysisObservation, Decision, Observations
from modelrollout.core.phases import Phase
from modelrollout.core.status import RolloutStatus, status_patch
from modelrollout.kube import KubeAdapter
from modelrollout.sources import MetricSource, ScrapeRequest

log = logging.getLogger(__name__)
OWN_STATUS_KEYS_EXCLUDED = ("kopf",)  # kopf keeps its own bookkeeping in status
IN_FLIGHT = (Phase.PROGRESSING.value, Phase.PAUSED.value, Phase.PROMOTING.value)


@dataclass
class Context:
    kube: KubeAdapter
    source: MetricSource
    next_tick: dict[str, datetime] = field(default_factory=dict)  # by rollout uid (memory only)


def rollout_key(body: dict[str, Any]) -> str:
    return f"{body['metadata']['namespace']}/{body['metadata']['name']}"


async def gather(ctx: Context, body: dict[str, Any]) -> Observations:
    meta, spec = body["metadata"], body.get("spec") or {}
    ns, name = meta["namespace"], meta["name"]
    service = (spec.get("service") or {}).get("name")
    preview = ((spec.get("strategy") or {}).get("blueGreen") or {}).get("previewService")
    deployments, main_sel, preview_sel = await asyncio.gather(
        asyncio.to_thread(ctx.kube.observe_deployments, ns, name),
        asyncio.to_thread(ctx.kube.service_selector, ns, service) if service else _none(),
        asyncio.to_thread(ctx.kube.service_selector, ns, preview) if preview else _none(),
    )
    return Observations(name=name, generation=meta.get("generation", 0), annotations=dict(meta.get("annotations")
                        or {}), deployments=deployments, main_selector=main_sel, preview_selector=preview_sel)


async def _none() -> None:
    return None


def _scrape_request(body: dict[str, Any], status: dict[str, Any], pods: list[Any]) -> ScrapeRequest | None:
    canary, stable = status.get("canaryVersion"), status.get("stableVersion")
    if not canary or not stable:
        return None
    spec = body["spec"]
    return ScrapeRequest(key=rollout_key(body), model=spec["model"]["name"], canary_version=canary,
                         stable_version=stable, port=int((spec.get("serving") or {}).get("port", 8080)),
                         pods=[p for p in pods if p.version in (canary, stable)])


async def _observe(ctx: Context, body: dict[str, Any], status: dict[str, Any]) -> Tick | None:
    """Scrape the ready pods of both versions; None without a canary or while there is no baseline."""
    meta = body["metadata"]
    pods = await asyncio.to_thread(ctx.kube.ready_pods, meta["namespace"], meta["name"])
    request = _scrape_request(body, status, pods)
    return None if request is None else await ctx.source.observe(request)


async def analyse(ctx: Context, body: dict[str, Any], status: dict[str, Any]) -> AnalysisObservation | None:
    """Scrape both versions and run the engine; None while there is no baseline yet."""
    tick = await _observe(ctx, body, status)
    if tick is None:
        return None
    config = AnalysisConfig.from_spec(body["spec"].get("analysis") or {})
    engine_state = ((status.get("analysis") or {}).get("engineState")) or None
    state = AnalysisState.from_dict(engine_state, config) if engine_state else AnalysisState.initial(config)
    outcome, new_state = assess_tick(config, state, tick)
    meta = body["metadata"]
    for result in outcome.results:
        opmetrics.VERDICTS.labels(meta["namespace"], meta["name"], result.name, result.verdict.value).inc()
    return AnalysisObservation(outcome=outcome, engine_state=new_state.to_dict())


async def _prime_baseline(ctx: Context, body: dict[str, Any], status: dict[str, Any]) -> None:
    """Read the pods once between analysis ticks after a (re)start, so the first due tick covers a
    whole interval instead of only recording baselines."""
    if status.get("phase") in IN_FLIGHT and not ctx.source.has_baseline(rollout_key(body)):
        await _observe(ctx, body, status)


async def act(ctx: Context, body: dict[str, Any], decision: Decision) -> None:
    kube, spec = ctx.kube, body["spec"]
    if decision.deployments is not None:
        await asyncio.gather(*(asyncio.to_thread(kube.apply_deployment, body, v, intent)
                               for v, intent in decision.deployments.items()))
    for version in decision.delete_versions:
        await asyncio.to_thread(kube.delete_version, body, version)
    port, target = int(spec["service"].get("port", 80)), int((spec.get("serving") or {}).get("port", 8080))
    if decision.main_selector is not None and decision.deployments:
        await asyncio.to_thread(kube.ensure_service, body, spec["service"]["name"], port, target,
                                dict(decision.main_selector))
    preview = ((spec.get("strategy") or {}).get("blueGreen") or {}).get("previewService")
    if preview and decision.preview_selector is not None:
        await asyncio.to_thread(kube.ensure_service, body, preview, port, target, dict(decision.preview_selector))
    await _write_status(ctx, body, decision.status)
    for event in decision.events:
        await asyncio.to_thread(kube.post_event, body, event)


async def _write_status(ctx: Context, body: dict[str, Any], status: RolloutStatus) -> None:
    patch = status_patch(body.get("status"), status)
    if patch:
        meta = body["metadata"]
        await asyncio.to_thread(ctx.kube.patch_status, meta["namespace"], meta["name"], patch)


def is_due(ctx: Context, body: dict[str, Any], now: datetime) -> bool:
    """Whether this timer tick should reconcile: the decided wake-up time came, spec changed, or a
    manual command waits. (Memory only: after a restart every rollout is looked at at once.)"""
    meta, status = body["metadata"], body.get("status") or {}
    wake = ctx.next_tick.get(meta["uid"])
    annotations = meta.get("annotations") or {}
    command_id = annotations.get(COMMAND_ID_ANNOTATION)
    return (wake is None or now >= wake or status.get("observedGeneration") != meta.get("generation")
            or (command_id is not None and command_id != status.get("lastCommandId")))


async def tick(ctx: Context, body: dict[str, Any], now: datetime) -> Decision:
    status = {k: v for k, v in (body.get("status") or {}).items() if k not in OWN_STATUS_KEYS_EXCLUDED}
    obs = await gather(ctx, body)
    decision = decide_from_dicts(body.get("spec") or {}, status, obs, now)
    if decision.analysis_due:
        seen = await analyse(ctx, body, status)
        if seen is not None:
            decision = decide_from_dicts(body.get("spec") or {}, status, replace(obs, analysis=seen), now)
    else:
        await _prime_baseline(ctx, body, status)
    if decision.status.phase is not None and decision.status.phase.value not in IN_FLIGHT:
        ctx.source.forget(rollout_key(body))
    await act(ctx, body, decision)
    ctx.next_tick[body["metadata"]["uid"]] = decision.next_tick_at
    opmetrics.record_decision(body, decision)
    return decision
