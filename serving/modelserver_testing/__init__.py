"""Fault injection around the real model server: TESTING ONLY, never shipped in the serving image.

The e2e tests and `make chaos` need model versions that fail in controlled ways (a share of inferences
answered 500, slow inferences, a `/metrics` that never answers). Those knobs are not the server's: this
package wraps the unchanged `modelserver` (its data plane and its app) and reads them from the
environment. The local cluster runs it for the image `modelrollout/modelserver-testing`
(cluster/localcluster/images.py); the `modelrollout-server` distribution and serving/Dockerfile leave
it out, so a user's `modelserver --help` has none of it.

| environment variable             | effect                                                      |
|----------------------------------|-------------------------------------------------------------|
| MODELSERVER_CHAOS_ERROR_RATE     | fraction 0..1 of inferences answered 500, counted as errors |
| MODELSERVER_CHAOS_LATENCY_MS     | added to each inference (inside its measured latency)       |
| MODELSERVER_CHAOS_METRICS_HANG   | `/metrics` never answers: a scrape outage                   |
| MODELSERVER_CHAOS_SEED           | seeds the error draw                                        |

>>> read_faults({"MODELSERVER_CHAOS_ERROR_RATE": "0.3", "MODELSERVER_CHAOS_METRICS_HANG": "1"})
Faults(error_rate=0.3, latency_ms=0.0, metrics_hang=True, seed=None)
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from modelserver.dataplane import DataPlane, Prediction
from modelserver.metrics import ServerMetrics
from modelserver.server import ModelServer
from modelserver.settings import Settings, parse_bool
from modelserver.tensors import BadInput, InferRequest

log = logging.getLogger(__name__)

ERROR_RATE_ENV = "MODELSERVER_CHAOS_ERROR_RATE"
LATENCY_MS_ENV = "MODELSERVER_CHAOS_LATENCY_MS"
METRICS_HANG_ENV = "MODELSERVER_CHAOS_METRICS_HANG"
SEED_ENV = "MODELSERVER_CHAOS_SEED"


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0
    latency_ms: float = 0.0
    metrics_hang: bool = False
    seed: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.error_rate or self.latency_ms or self.metrics_hang)


def read_faults(env: Mapping[str, str]) -> Faults:
    """The faults the environment asks for; ValueError names the variable of a bad value."""
    try:
        faults = Faults(error_rate=float(env.get(ERROR_RATE_ENV) or 0.0),
                        latency_ms=float(env.get(LATENCY_MS_ENV) or 0.0),
                        metrics_hang=parse_bool(env.get(METRICS_HANG_ENV, "")),
                        seed=int(env[SEED_ENV]) if env.get(SEED_ENV) else None)
    except ValueError as exc:
        raise ValueError(f"MODELSERVER_CHAOS_*: {exc}") from None
    if not 0.0 <= faults.error_rate <= 1.0:
        raise ValueError(f"{ERROR_RATE_ENV} must be between 0 and 1")
    if faults.latency_ms < 0:
        raise ValueError(f"{LATENCY_MS_ENV} must not be negative")
    return faults


class FaultyPlane(DataPlane):
    """The real data plane, with latency and failures injected before each inference."""

    def __init__(self, faults: Faults, settings: Settings, metrics: ServerMetrics) -> None:
        super().__init__(settings, metrics)
        self.faults = faults
        self._draw = random.Random(faults.seed)

    async def infer(self, request: InferRequest) -> Prediction:
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if self.faults.error_rate > 0 and self._draw.random() < self.faults.error_rate:
            # The inference path answers an exception's own status and counts it like any other answer:
            # a 500 here is counted as a model error, exactly as a crash inside predict() would be.
            raise BadInput(f"injected failure ({ERROR_RATE_ENV})", status=500)
        return await super().infer(request)


@web.middleware
async def _hang_metrics(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    if request.path == "/metrics":
        log.warning("%s: /metrics will not answer", METRICS_HANG_ENV)
        await asyncio.Event().wait()
    return await handler(request)


def faulty_server(faults: Faults) -> Callable[[Settings], ModelServer]:
    """A ModelServer factory (for modelserver.__main__.main) whose servers inject `faults`."""

    def make(settings: Settings) -> ModelServer:
        plane = FaultyPlane(faults, settings, ServerMetrics(settings.model_name, settings.model_version))
        server = ModelServer(settings, plane=plane)
        if faults.metrics_hang:
            server.app.middlewares.append(_hang_metrics)  # before start(): the app is frozen only then
        if faults.any:
            log.warning("FAULT INJECTION ON (testing only): error rate %s, latency %s ms, metrics hang %s",
                        faults.error_rate, faults.latency_ms, faults.metrics_hang)
        return server

    return make
