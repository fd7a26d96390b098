"""Mirroring: after a request was answered, a sampled copy goes to the shadow candidate, fire-and-forget.

The stable version's pods run the candidate "in the shadow": users only ever get the stable answer, and
a configured percentage of answered requests is copied to the candidate's own Service, so it is judged
on the same requests (the candidate counts agreement pairs, modelserver/shadow.py). The primary request
is never delayed or failed by this: the copy is taken only after the answer was written, goes through a
bounded queue (full: the copy is dropped and counted) to a small pool of workers, each sending with a
short timeout. A failed copy is counted and forgotten; nothing is retried.

The copy is the client's body as received, sent to the same protocol's path of the same model name (the
served version's path segment left out: the candidate serves another version), with headers naming the
primary's answer (contract: docs/api.md):

    X-Shadow-Of-Version   the version that answered the client; marks the request as a copy, which is
                          itself never mirrored again
    X-Request-Id          the primary's prediction id
    X-Primary-Prediction  the primary's prediction token (signed with the rollout's key, so the candidate
                          trusts the predicted classes in it and nothing else)

Sampling draws from a random.Random (seedable for tests) per answered request, so a share of 10 % is
10 % of requests in expectation, independent of how requests are ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

import aiohttp

from modelserver.contract import MirrorOutcome, Protocol
from modelserver.metrics import ServerMetrics
from modelserver.mirror_config import OFF, MirrorConfig, MirrorConfigWatcher
from modelserver.settings import Settings

log = logging.getLogger(__name__)

SHADOW_OF_VERSION_HEADER = "X-Shadow-Of-Version"
REQUEST_ID_HEADER = "X-Request-Id"
PRIMARY_PREDICTION_HEADER = "X-Primary-Prediction"
POLL_S = 1.0  # how often the configuration file is looked at (one stat call)
# Bodies waiting in the queue at most, whatever the queue's length: 100 copies of a 4 MiB body would be
# 400 MiB of a pod's memory for requests nobody waits for.
MAX_QUEUED_BYTES = 32 * 1024 * 1024
_FAILURE_LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class Copy:
    url: str
    body: bytes
    headers: dict[str, str]


def copy_path(protocol: Protocol, model_name: str) -> str:
    """The inference path of the same model on the candidate, without a version segment.

    >>> copy_path(Protocol.V2, "iris"), copy_path(Protocol.V1, "iris")
    ('/v2/models/iris/infer', '/v1/models/iris:predict')
    """
    return f"/v2/models/{model_name}/infer" if protocol is Protocol.V2 else f"/v1/models/{model_name}:predict"


class Mirror:
    """The sampler, the bounded queue and the workers of one server; configured by `apply`."""

    def __init__(self, settings: Settings, metrics: ServerMetrics, rng: random.Random | None = None,
                 poll_s: float = POLL_S) -> None:
        self.settings = settings
        self.metrics = metrics
        self.config: MirrorConfig = OFF
        self._rng = rng or random.Random()
        self._poll_s = poll_s
        self._queue: asyncio.Queue[Copy] = asyncio.Queue(settings.mirror_queue_size)
        self._queued_bytes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._last_failure_log = -_FAILURE_LOG_EVERY_S
        self.watcher = (MirrorConfigWatcher(settings.mirror_config_file, self.apply, metrics.count_mirror_config)
                        if settings.mirror_config_file else None)

    # --- configuration ---------------------------------------------------------------------------
    def apply(self, config: MirrorConfig) -> None:
        self.config = config
        self.metrics.set_mirror(config.percent, config.version if config.is_on else "")

    async def _watch(self, watcher: MirrorConfigWatcher) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            watcher.poll()

    # --- the request path (no await: nothing here can delay an answer) ---------------------------
    def wants_copy(self) -> MirrorConfig | None:
        """The configuration to copy this answered request under, or None (off, or not sampled)."""
        config = self.config
        if not config.is_on or (config.percent < 100 and self._rng.random() * 100 >= config.percent):
            return None
        return config

    def offer(self, copy: Copy) -> None:
        """Queue a copy, or drop and count it when the queue (or its byte budget) is full."""
        if self._session is None or self._queued_bytes + len(copy.body) > MAX_QUEUED_BYTES:
            self.metrics.count_mirror(MirrorOutcome.DROPPED)
            return
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.metrics.count_mirror(MirrorOutcome.DROPPED)
            return
        self._queued_bytes += len(copy.body)

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the configuration once (so a pod starts mirroring at once), then workers and the watcher."""
        s = self.settings
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.mirror_workers),
            timeout=aiohttp.ClientTimeout(total=s.mirror_timeout_s), auto_decompress=False)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"mirror-{i}") for i in range(s.mirror_workers)]
        if self.watcher is not None:
            self.watcher.poll()
            self._tasks.append(loop.create_task(self._watch(self.watcher), name="mirror-config"))

    async def close(self) -> None:
        """Stop the workers; copies still queued are never sent, so they count as dropped."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while not self._queue.empty():
            self._queue.get_nowait()
            self.metrics.count_mirror(MirrorOutcome.DROPPED)
        self._queued_bytes = 0
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the workers -----------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            copy = await self._queue.get()
            self._queued_bytes -= len(copy.body)
            self.metrics.count_mirror(await self._send(copy))

    async def _send(self, copy: Copy) -> MirrorOutcome:
        assert self._session is not None
        try:
            async with self._session.post(copy.url, data=copy.body, headers=copy.headers) as response:
                await response.read()  # to reuse the connection
                if 200 <= response.status < 300:
                    return MirrorOutcome.SENT
                self._log_failure(f"{copy.url} answered {response.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._log_failure(f"{copy.url}: {type(exc).__name__} {exc}".rstrip())
        return MirrorOutcome.FAILED

    def _log_failure(self, detail: str) -> None:
        """One line a minute at most: a dead candidate must not flood the stable pods' logs."""
        now = time.monotonic()
        if now - self._last_failure_log >= _FAILURE_LOG_EVERY_S:
            self._last_failure_log = now
            log.warning("mirrored copy failed (counted in modelserver_mirror_requests_total{outcome=\"failed\"}; "
                        "logged once a minute): %s", detail)

