"""Metric sources: where per-tick observations of both versions come from.

A source is one small protocol (`observe`), one module per implementation, chosen by name:
`pods` scrapes the serving pods' /metrics directly, so no Prometheus is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from modelrollout.analysis.types import Tick
from modelrollout.kube import PodTarget


@dataclass(frozen=True)
class ScrapeRequest:
    """What to observe for one rollout tick."""

    key: str  # namespace/name of the rollout: a source keeps per-rollout baselines under it
    model: str
    canary_version: str
    stable_version: str
    port: int
    pods: Sequence[PodTarget]  # the ready pods of both versions


class MetricSource(Protocol):
    async def observe(self, request: ScrapeRequest) -> Tick | None:
        """One tick's increments of both versions; None when there is no baseline yet (first look).

        Failures are data: a version any of whose ready pods could not be read is None in the Tick, with
        the reasons in Tick.errors."""

    def forget(self, key: str) -> None:
        """Drop the baselines of a rollout whose analysis ended."""

    def has_baseline(self, key: str) -> bool:
        """Whether the next observe() of this rollout can yield a tick."""


def _pod_source() -> MetricSource:
    from modelrollout.sources.podscrape import PodScrapeSource

    return PodScrapeSource()


SOURCES: dict[str, Callable[[], MetricSource]] = {"pods": _pod_source}
