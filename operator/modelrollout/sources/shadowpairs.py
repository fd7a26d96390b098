"""A shadow stage's evidence: each ready candidate pod's cumulative agreement and labelled pairs, by pod uid.

The candidate counts them itself (docs/metrics.md, "Mirroring to a shadow candidate"): the pairs of every mirrored
copy (`modelserver_shadow_pairs_total`, the primary's class beside its own) and, once a label that a stable pod
forwarded arrives, who was right (`modelserver_shadow_labelled_pairs_total`). Counters are read as they are
(cumulative since the pod's server started); the core keeps each pod's last counts in status, so an operator
restart loses nothing and a pod's restart is seen as its counters going down (core/shadowstep.fold_counts).
A pod that cannot be read is named in `errors`: that look is then Inconclusive, never judged on the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from modelrollout.analysis.paired import PairedCounts
from modelrollout.core.observations import ShadowObservation
from modelrollout.kube import PodTarget
from modelrollout.sources.podscrape import SCRAPE_TIMEOUT, scrape
from modelserver.contract import ShadowLabelOutcome
from modelserver.contract_parse import ModelMetrics, parse_pod_metrics


def paired_counts(metrics: ModelMetrics) -> PairedCounts:
    """The candidate's pair counters as PairedCounts.

    >>> from types import MappingProxyType as M
    >>> m = ModelMetrics("iris", "2", shadow_pairs=M({("a", "a"): 9.0, ("a", "b"): 1.0}),
    ...                  shadow_labelled=M({"both_right": 4.0, "stable_only": 1.0}))
    >>> c = paired_counts(m); (c.agree, c.disagree, c.both_right, c.stable_only, c.candidate_only)
    (9.0, 1.0, 4.0, 1.0, 0.0)
    """
    agree = sum(n for (primary, candidate), n in metrics.shadow_pairs.items() if primary == candidate)
    labelled = metrics.shadow_labelled
    return PairedCounts(
        agree=agree, disagree=sum(metrics.shadow_pairs.values()) - agree,
        both_right=labelled.get(ShadowLabelOutcome.BOTH_RIGHT.value, 0.0),
        stable_only=labelled.get(ShadowLabelOutcome.STABLE_ONLY.value, 0.0),
        candidate_only=labelled.get(ShadowLabelOutcome.CANDIDATE_ONLY.value, 0.0),
        both_wrong=labelled.get(ShadowLabelOutcome.BOTH_WRONG.value, 0.0),
    )


async def _read(session: aiohttp.ClientSession, pod: PodTarget, url: str, model: str,
                timeout: float) -> PairedCounts | str:
    try:
        text = await scrape(session, url, timeout)
        found = parse_pod_metrics(text).model(model, pod.version)
    except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
        return f"pod {pod.name}: scrape failed ({type(exc).__name__}: {exc or 'timeout'})"
    if found is None:
        return f"pod {pod.name}: no series for model {model} v{pod.version}"
    return paired_counts(found)


async def read_shadow_pairs(pods: Sequence[PodTarget], port: int, path: str, model: str, version: str,
                            timeout: float = SCRAPE_TIMEOUT) -> ShadowObservation:
    """Scrape the ready pods of the shadow `version` concurrently (`port` and `path`: where they serve metrics)."""
    targets = [p for p in pods if p.version == version]
    if not targets:
        return ShadowObservation(version, errors=(f"version {version} has no ready pods to scrape",))
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(_read(session, p, f"http://{p.ip}:{port}{path}", model, timeout)
                                         for p in targets))
    counts = {p.uid: r for p, r in zip(targets, results, strict=True) if isinstance(r, PairedCounts)}
    return ShadowObservation(version, counts, tuple(r for r in results if isinstance(r, str)))
