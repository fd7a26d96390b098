"""The `prometheus` metric source: each tick, ask Prometheus for both versions' counts over the window
since the previous look (queries in promql.py), all queries concurrently.

The window runs from the previous successful look to now, in milliseconds, and every query is
evaluated at the same `time`, so consecutive ticks' windows meet without gap or overlap. The first
look of a rollout only records its time (like the pod scrape's baseline), so no tick counts requests
from before the analysis began twice. A failed, timed-out or empty query makes that version missing
in the Tick - both versions, so neither is counted twice - with the reason in Tick.errors: the analysis
calls it Inconclusive, never Pass or Fail, and the window is kept, so the next successful look covers
the gap.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelrollout.analysis.types import Tick, VersionCounts
from modelrollout.sources import PrometheusAccess, ScrapeRequest
from modelrollout.sources.promql import Query, counts_of, queries_for, render, samples_of


@dataclass(frozen=True)
class _Answer:
    version: str
    query: Query
    counts: Mapping[str, Any] | None
    error: str | None = None


def _ssl(access: PrometheusAccess) -> ssl.SSLContext | bool:
    if access.config.insecure_skip_verify:
        return False  # the user's explicit choice (tls.insecureSkipVerify): no certificate check
    if access.ca_pem is not None:
        return ssl.create_default_context(cadata=access.ca_pem)
    return True


async def _get(session: aiohttp.ClientSession, access: PrometheusAccess, promql: str, at: float) -> Any:
    headers = {"Authorization": f"Bearer {access.bearer_token}"} if access.bearer_token else {}
    async with session.get(f"{access.config.address}/api/v1/query", params={"query": promql, "time": f"{at:.3f}"},
                           headers=headers, ssl=_ssl(access),
                           timeout=aiohttp.ClientTimeout(total=access.config.timeout_seconds)) as resp:
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        if resp.status != 200:
            detail = body.get("error") if isinstance(body, dict) else None
            raise RuntimeError(f"HTTP {resp.status}" + (f": {detail}" if detail else ""))
        return body


class PrometheusSource:
    def __init__(self) -> None:
        self.last_look: dict[str, float] = {}  # rollout key -> end of the last window counted

    def forget(self, key: str) -> None:
        self.last_look.pop(key, None)

    def has_baseline(self, key: str) -> bool:
        return key in self.last_look

    async def observe(self, req: ScrapeRequest) -> Tick | None:
        now = time.time()
        start = self.last_look.get(req.key)
        if start is None:
            self.last_look[req.key] = now
            return None
        access = req.prometheus
        if access is None or req.analysis is None:
            return self._tick(req, {}, ["source prometheus without spec.analysis.prometheus"], now - start)
        if access.problem is not None:
            return self._tick(req, {}, [access.problem], now - start)
        answers = await self._ask(req, access, now, now - start)
        errors = [f"version {a.version}: {a.query.name} query: {a.error}" for a in answers if a.error]
        if errors:
            # Neither version counts: the next look covers this window again, and a version counted
            # now would be counted twice then.
            return self._tick(req, {}, errors, now - start)
        self.last_look[req.key] = now
        return self._tick(req, _merge(answers), errors, now - start)

    async def _ask(self, req: ScrapeRequest, access: PrometheusAccess, now: float, window: float) -> list[_Answer]:
        assert req.analysis is not None
        queries = queries_for(req.analysis, req.model, req.server)
        jobs = [(version, q) for version in (req.canary_version, req.stable_version) for q in queries]
        async with aiohttp.ClientSession() as session:
            return list(await asyncio.gather(*(
                self._one(session, access, version, q, render(q.template, version=version, namespace=req.namespace,
                                                              window_seconds=window), now)
                for version, q in jobs)))

    @staticmethod
    async def _one(session: aiohttp.ClientSession, access: PrometheusAccess, version: str, query: Query,
                   promql: str, at: float) -> _Answer:
        try:
            body = await _get(session, access, promql, at)
            return _Answer(version, query, counts_of(query, samples_of(body)))
        except TimeoutError:
            return _Answer(version, query, None, f"timed out after {access.config.timeout_seconds:g}s")
        except (aiohttp.ClientError, OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            return _Answer(version, query, None, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _tick(req: ScrapeRequest, counts: Mapping[str, VersionCounts], errors: list[str], window: float) -> Tick:
        pods = {v: sum(1 for p in req.pods if p.version == v) for v in (req.canary_version, req.stable_version)}
        total = sum(pods.values())
        for version, n in pods.items():
            if n == 0:
                errors.append(f"version {version} has no ready pods")
        return Tick(canary=counts.get(req.canary_version), stable=counts.get(req.stable_version),
                    expected_canary_share=pods[req.canary_version] / total if total else 0.0,
                    errors=tuple(errors), duration_seconds=window)


def _merge(answers: list[_Answer]) -> dict[str, VersionCounts]:
    """One VersionCounts per version from its queries' answers (all of which succeeded)."""
    fields: dict[str, dict[str, Any]] = {}
    for a in answers:
        fields.setdefault(a.version, {}).update(a.counts or {})
    return {version: VersionCounts(**f) for version, f in fields.items()}
