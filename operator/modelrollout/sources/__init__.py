"""Metric sources: where per-tick observations of both versions come from.

A source is one small protocol (`observe`), one module per implementation, chosen by name
(`spec.analysis.source`): `pods` scrapes the serving pods' /metrics directly, so no Prometheus is
needed; `prometheus` queries a Prometheus server for the same counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.sourceconfig import PrometheusConfig, SourceName
from modelrollout.analysis.types import Tick
from modelrollout.core.servermetrics import ServerMetrics
from modelrollout.kube import PodTarget


@dataclass(frozen=True)
class PrometheusAccess:
    """`spec.analysis.prometheus` with its Secrets read by the adapter: all a query needs."""

    config: PrometheusConfig
    ca_pem: str | None = None
    bearer_token: str | None = None
    problem: str | None = None  # a Secret that could not be read: the tick is missing data, saying why


@dataclass(frozen=True)
class ScrapeRequest:
    """What to observe for one rollout tick."""

    key: str  # namespace/name of the rollout: a source keeps per-rollout baselines under it
    model: str
    canary_version: str
    stable_version: str
    port: int  # where the pods expose their metrics (spec.serving.metrics.port, else the serving port)
    pods: Sequence[PodTarget]  # the ready pods of both versions
    namespace: str = ""
    analysis: AnalysisConfig | None = None  # which metrics (so which counts) the tick needs
    prometheus: PrometheusAccess | None = None  # with source prometheus
    server: ServerMetrics = field(default_factory=ServerMetrics)  # the pods' metric names (spec.serving.metrics)

    @property
    def source(self) -> SourceName:
        return self.analysis.source if self.analysis is not None else SourceName.PODS


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


def _prometheus_source() -> MetricSource:
    from modelrollout.sources.prometheus import PrometheusSource

    return PrometheusSource()


SOURCES: dict[str, Callable[[], MetricSource]] = {SourceName.PODS: _pod_source,
                                                  SourceName.PROMETHEUS: _prometheus_source}


class SourceByName:
    """The operator's one MetricSource: each request goes to the source its rollout names."""

    def __init__(self, sources: Mapping[str, MetricSource]) -> None:
        self.sources = dict(sources)

    async def observe(self, request: ScrapeRequest) -> Tick | None:
        return await self.sources[request.source].observe(request)

    def forget(self, key: str) -> None:
        for source in self.sources.values():
            source.forget(key)

    def has_baseline(self, key: str) -> bool:
        return any(source.has_baseline(key) for source in self.sources.values())


def all_sources() -> SourceByName:
    return SourceByName({name: make() for name, make in SOURCES.items()})
