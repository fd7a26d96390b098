"""Mirroring: after a request was answered, a sampled copy goes to the shadow candidate, fire-and-forget.

The stable version's pods run the candidate "in the shadow": users only ever get the stable answer, and
a configured percentage of answered requests is copied to the candidate's own Service, so it is judged
on the same requests (the candidate counts agreement pairs, modelserver/shadow.py). The primary request
is never delayed or failed by this: the copy is taken only after the answer was written, goes through a
bounded queue (full: the copy is dropped and counted) to a small pool of sender threads, each sending with
a short timeout. A failed copy is counted and forgotten; nothing is retried.

Why threads and not tasks on the event loop: sending a copy through aiohttp's client on the serving loop
cost about 0.13 ms of the loop's time per copy, as much as answering the request itself, and tripled the
median latency of a server at a third of its capacity (docs/benchmarks.md). A sender thread blocks in
socket calls, which release the GIL, so the loop's share of a copy is one queue put.

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
import queue
import random
import threading

from modelserver.contract import MirrorOutcome, Protocol
from modelserver.metrics import ServerMetrics
from modelserver.mirror_config import OFF, MirrorConfig, MirrorConfigWatcher
from modelserver.mirror_send import Copy, Sender
from modelserver.settings import Settings

log = logging.getLogger(__name__)

SHADOW_OF_VERSION_HEADER = "X-Shadow-Of-Version"
REQUEST_ID_HEADER = "X-Request-Id"
PRIMARY_PREDICTION_HEADER = "X-Primary-Prediction"
POLL_S = 1.0  # how often the configuration file is looked at (one stat call)
# Bodies waiting in the queue at most, whatever the queue's length: 100 copies of a 4 MiB body would be
# 400 MiB of a pod's memory for requests nobody waits for.
MAX_QUEUED_BYTES = 32 * 1024 * 1024


def copy_path(protocol: Protocol, model_name: str) -> str:
    """The inference path of the same model on the candidate, without a version segment.

    >>> copy_path(Protocol.V2, "iris"), copy_path(Protocol.V1, "iris")
    ('/v2/models/iris/infer', '/v1/models/iris:predict')
    """
    return f"/v2/models/{model_name}/infer" if protocol is Protocol.V2 else f"/v1/models/{model_name}:predict"


class Mirror:
    """The sampler, the bounded queue and the sender threads of one server; configured by `apply`."""

    def __init__(self, settings: Settings, metrics: ServerMetrics, rng: random.Random | None = None,
                 poll_s: float = POLL_S) -> None:
        self.settings = settings
        self.metrics = metrics
        self.config: MirrorConfig = OFF
        self._rng = rng or random.Random()
        self._poll_s = poll_s
        # Unbounded itself: the bound is kept by `offer` (copies and bytes), so stop signals always fit.
        self._queue: queue.SimpleQueue[Copy | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the two counters below, shared with the senders
        self._pending = 0  # offered and not yet counted in an outcome: queued or being sent
        self._pending_bytes = 0
        self._senders: list[Sender] = []
        self._watch_task: asyncio.Task[None] | None = None
        metrics.watch_mirror_pending(lambda: self._pending)
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
        """Queue a copy, or drop and count it when the queue (copies or bytes not yet sent) is full."""
        size = len(copy.body)
        with self._lock:
            accepted = bool(self._senders) and self._pending < self.settings.mirror_queue_size \
                and self._pending_bytes + size <= MAX_QUEUED_BYTES
            if accepted:
                self._pending += 1
                self._pending_bytes += size
        if accepted:
            self._queue.put(copy)
        else:
            self.metrics.count_mirror(MirrorOutcome.DROPPED)

    @property
    def pending(self) -> int:
        """Copies queued or being sent."""
        return self._pending

    def _finished(self, copy: Copy) -> None:
        """`copy`'s outcome was counted."""
        with self._lock:
            self._pending -= 1
            self._pending_bytes -= len(copy.body)

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the configuration once (so a pod starts mirroring at once), then the senders and the watcher."""
        s = self.settings
        self._senders = [Sender(self._queue, self._finished, self.metrics.count_mirror, s.mirror_timeout_s, i)
                         for i in range(s.mirror_workers)]
        for sender in self._senders:
            sender.start()
        if self.watcher is not None:
            self.watcher.poll()
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(self.watcher), name="mirror-config")

    async def close(self) -> None:
        """Stop the watcher and the senders; copies still queued are never sent, so they count as dropped."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        senders, self._senders = self._senders, []  # `offer` drops from now on
        with contextlib.suppress(queue.Empty):
            while True:
                left = self._queue.get_nowait()
                if left is not None:
                    self.metrics.count_mirror(MirrorOutcome.DROPPED)
                    self._finished(left)
        for _ in senders:
            self._queue.put(None)
        # A sender in the middle of a copy finishes it within its timeout; it is a daemon thread regardless.
        for sender in senders:
            await asyncio.to_thread(sender.join, self.settings.mirror_timeout_s * 3 + 1)
