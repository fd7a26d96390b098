"""Mirroring: after a request was answered, a sampled copy goes to the shadow candidate, fire-and-forget.

The stable version's pods run the candidate "in the shadow": users only ever get the stable answer, and
a configured percentage of answered requests is copied to the candidate's own Service, so it is judged
on the same requests (the candidate counts agreement pairs, modelserver/shadow.py). The primary request
is never delayed or failed by this: the copy is taken only after the answer was written, goes through a
bounded queue (full: the copy is dropped and counted) to a small pool of senders, each sending with a
short timeout. A failed copy is counted and forgotten; nothing is retried.

The senders run in a process of their own (modelserver/mirror_send.py), started when mirroring is first
turned on (a server never configured to mirror never starts it): sending a copy is an HTTP request of its
own, and done by this process (on its event loop, or in threads sharing its GIL) it cost the primary
requests as much as a second request each. The loop's share of a copy is one message on a Unix socket
pair, and reading the one-byte outcome back.

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
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from modelserver.contract import MirrorOutcome, Protocol
from modelserver.metrics import ServerMetrics
from modelserver.mirror_config import OFF, MirrorConfig, MirrorConfigWatcher
from modelserver.mirror_send import FAILED, SENT, Copy
from modelserver.settings import Settings

log = logging.getLogger(__name__)

SHADOW_OF_VERSION_HEADER = "X-Shadow-Of-Version"
REQUEST_ID_HEADER = "X-Request-Id"
PRIMARY_PREDICTION_HEADER = "X-Primary-Prediction"
POLL_S = 1.0  # how often the configuration file is looked at (one stat call)
# The socket pair's buffer (the kernel caps it at net.core.wmem_max): copies queued for the senders, in bytes.
# A message larger than the buffer can take is refused, so a copy of a body near this size is dropped.
CHANNEL_BYTES = 4 * 1024 * 1024
RESTART_AFTER_S = 10.0  # a sender process that died is started again on a copy after this pause


def copy_path(protocol: Protocol, model_name: str) -> str:
    """The inference path of the same model on the candidate, without a version segment.

    >>> copy_path(Protocol.V2, "iris"), copy_path(Protocol.V1, "iris")
    ('/v2/models/iris/infer', '/v1/models/iris:predict')
    """
    return f"/v2/models/{model_name}/infer" if protocol is Protocol.V2 else f"/v1/models/{model_name}:predict"


class Mirror:
    """The sampler, the bounded queue and the sender process of one server; configured by `apply`."""

    def __init__(self, settings: Settings, metrics: ServerMetrics, rng: random.Random | None = None,
                 poll_s: float = POLL_S, declare: Callable[[Sequence[str]], None] | None = None) -> None:
        """`declare`: told the outcome names of each configuration read (the data plane counts them)."""
        self.settings = settings
        self._declare = declare
        self.metrics = metrics
        self.config: MirrorConfig = OFF
        self._rng = rng or random.Random()
        self._poll_s = poll_s
        self._started = False
        self._channel: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._died_at = -RESTART_AFTER_S
        self._pending = 0  # handed to the senders, no outcome yet
        self._watch_task: asyncio.Task[None] | None = None
        metrics.watch_mirror_pending(lambda: self._pending)
        self.watcher = (MirrorConfigWatcher(settings.mirror_config_file, self.apply, metrics.count_mirror_config)
                        if settings.mirror_config_file else None)

    # --- configuration ---------------------------------------------------------------------------
    def apply(self, config: MirrorConfig) -> None:
        self.config = config
        if self._declare is not None and config.outcomes:
            self._declare(config.outcomes)
        self.metrics.set_mirror(config.percent, config.version if config.is_on else "")
        if config.is_on and self._started and self._channel is None:
            self._start_senders()  # now rather than at the first copy, which would wait for it

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

    @property
    def sender_pid(self) -> int | None:
        """The sender process's id while it runs."""
        return self._process.pid if self._process is not None and self._channel is not None else None

    @property
    def pending(self) -> int:
        """Copies queued or being sent."""
        return self._pending

    def offer(self, copy: Copy) -> None:
        """Hand a copy to the senders, or drop and count it when the queue is full (or there is no sender)."""
        channel = self._channel or (self._start_senders() if self._started else None)
        if channel is None or self._pending >= self.settings.mirror_queue_size:
            self.metrics.count_mirror(MirrorOutcome.DROPPED)
            return
        try:
            channel.send(copy.encode())
        except OSError:  # the buffer is full (BlockingIOError), or the message larger than it can ever take
            self.metrics.count_mirror(MirrorOutcome.DROPPED)
            return
        self._pending += 1

    def _on_outcomes(self) -> None:
        """The senders' answers, one byte per copy, read whenever the socket has some."""
        channel = self._channel
        assert channel is not None
        while True:
            try:
                data = channel.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._senders_gone()
                return
            sent, failed = data.count(SENT), data.count(FAILED)
            for outcome, count in ((MirrorOutcome.SENT, sent), (MirrorOutcome.FAILED, failed)):
                for _ in range(count):
                    self.metrics.count_mirror(outcome)
            self._pending -= sent + failed

    # --- the sender process ------------------------------------------------------------------------
    def _start_senders(self) -> socket.socket | None:
        """Start the sender process (when mirroring turns on, or again a while after it died); its socket or None."""
        if time.monotonic() - self._died_at < RESTART_AFTER_S:
            return None
        s = self.settings
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHANNEL_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHANNEL_BYTES)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "modelserver.mirror_send", "--fd", str(theirs.fileno()),
                 "--workers", str(s.mirror_workers), "--timeout", str(s.mirror_timeout_s),
                 "--max-message", str(s.max_body_bytes + 65536), "--log-level", s.log_level],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.error("cannot start the mirror sender process: %s; copies are dropped", exc)
            ours.close()
            self._died_at = time.monotonic()
            return None
        finally:
            theirs.close()
        ours.setblocking(False)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_outcomes)
        self._channel = ours
        log.info("mirror sender process %d started (%d senders)", self._process.pid, s.mirror_workers)
        return ours

    def _senders_gone(self) -> None:
        """The sender process ended: what it held has no outcome but failed."""
        log.error("the mirror sender process ended (exit status %s); %d copies in it count as failed",
                  self._process.poll() if self._process else None, self._pending)
        for _ in range(self._pending):
            self.metrics.count_mirror(MirrorOutcome.FAILED)
        self._pending = 0
        self._close_channel()
        self._died_at = time.monotonic()

    def _close_channel(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(ValueError, RuntimeError):  # the loop may be closed already
                asyncio.get_running_loop().remove_reader(self._channel.fileno())
            self._channel.close()
            self._channel = None

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the configuration once (so a pod starts mirroring at once), then watch it."""
        self._started = True
        if self.watcher is not None:
            self.watcher.poll()
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(self.watcher), name="mirror-config")

    async def close(self) -> None:
        """Stop watching and stop the senders; copies not answered by then count as dropped."""
        self._started = False
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        process, self._process = self._process, None
        self._close_channel()
        if process is not None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        for _ in range(self._pending):
            self.metrics.count_mirror(MirrorOutcome.DROPPED)
        self._pending = 0
