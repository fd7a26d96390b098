"""Delivery of `spec.notifications` (core/notifications.py): each tick's Events, after its status is
written, posted to the rollout's webhooks.

Never on the tick's path: `submit` only queues. One queue and one worker per (rollout, webhook), so a
receiver that hangs or refuses delays only its own messages, in order. Each message gets a timeout per
attempt and retries with exponential backoff on connection errors, timeouts, 408, 429 and 5xx; any
other 4xx is final. A full queue (a receiver down for long) drops the newest message, counted.
Delivery is at least once: a tick replayed after an operator restart notifies again, with the same
`id` (the Event's name), so receivers can drop repeats.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelrollout import opmetrics
from modelrollout.analysis.sourceconfig import SecretKeyRef
from modelrollout.core.notifications import Format, Webhook
from modelrollout.core.phases import Event
from modelrollout.core.status import RolloutStatus

log = logging.getLogger(__name__)
QUEUE_SIZE = 100
RETRIES = 4  # after the first attempt: 1 + 2 + 4 + 8 s of backoff at most
BACKOFF_SECONDS = 1.0
RETRIED_STATUSES = frozenset({408, 429})
ICONS = {"Promoted": ":white_check_mark:", "RolledBack": ":rotating_light:", "Aborted": ":octagonal_sign:"}

SecretReader = Callable[[str, SecretKeyRef], Awaitable[str]]


@dataclass(frozen=True)
class Notice:
    namespace: str
    rollout: str
    webhook: Webhook
    payload: dict[str, Any]


def payload(fmt: Format, namespace: str, rollout: str, event: Event, event_id: str, status: RolloutStatus,
            now: dt.datetime) -> dict[str, Any]:
    """The body posted for one Event: the event, where the rollout stands, and the analysis numbers.

    >>> from modelrollout.core.phases import Phase
    >>> st = RolloutStatus(phase=Phase.HEALTHY)
    >>> payload(Format.SLACK, "ml", "fraud", Event("Normal", "Promoted", "v2 promoted"), "e1", st,
    ...         dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
    {'text': ':white_check_mark: *ml/fraud* Promoted: v2 promoted'}
    """
    if fmt is Format.SLACK:
        phase = None if status.phase is None else status.phase.value
        icon = ICONS.get(phase if phase == "RolledBack" else event.reason,
                         ":warning:" if event.type == "Warning" else ":information_source:")
        return {"text": f"{icon} *{namespace}/{rollout}* {event.reason}: {event.message}"}
    st = status.to_dict()
    return {
        "id": event_id, "time": now.isoformat(), "rollout": {"namespace": namespace, "name": rollout},
        "type": event.type, "reason": event.reason, "message": event.message,
        **{k: st[k] for k in ("phase", "stableVersion", "canaryVersion", "desiredWeight", "effectiveWeight")
           if k in st},
        "analysis": [r.to_dict() for r in status.analysis.results],
    }


def notices(body: dict[str, Any], webhooks: Iterable[Webhook], events: Iterable[tuple[Event, str]],
            status: RolloutStatus, now: dt.datetime) -> list[Notice]:
    """What each webhook wants of this tick's Events; `body` carries the status the tick started from."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    phase = None if status.phase is None else status.phase.value
    entered = phase if phase != (body.get("status") or {}).get("phase") else None
    return [Notice(ns, name, hook, payload(hook.format, ns, name, event, event_id, status, now))
            for event, event_id in events for hook in webhooks if hook.wants(event.reason, entered)]


class Notifier:
    def __init__(self, read_secret: SecretReader, backoff_seconds: float = BACKOFF_SECONDS) -> None:
        self.read_secret = read_secret
        self.backoff_seconds = backoff_seconds
        self._queues: dict[tuple[str, str, str], asyncio.Queue[Notice]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def submit(self, batch: Iterable[Notice]) -> None:
        for notice in batch:
            key = (notice.namespace, notice.rollout, notice.webhook.name)
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = asyncio.Queue(QUEUE_SIZE)
                worker = asyncio.get_running_loop().create_task(self._work(queue))
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)
            try:
                queue.put_nowait(notice)
            except asyncio.QueueFull:
                opmetrics.NOTIFICATIONS.labels("dropped").inc()
                log.warning("webhook %s of %s/%s: queue full, message dropped", notice.webhook.name,
                            notice.namespace, notice.rollout)

    async def _work(self, queue: asyncio.Queue[Notice]) -> None:
        while True:
            notice = await queue.get()
            try:
                await self._deliver(notice)
            except Exception:  # one message's failure must not end the webhook's worker
                log.exception("webhook %s: delivery failed", notice.webhook.name)
                opmetrics.NOTIFICATIONS.labels("failed").inc()
            finally:
                queue.task_done()

    async def _deliver(self, notice: Notice) -> None:
        hook = notice.webhook
        url = hook.url if hook.url_secret is None else await self.read_secret(notice.namespace, hook.url_secret)
        assert url is not None  # the spec parser requires url or urlFrom
        if self._session is None:
            self._session = aiohttp.ClientSession()
        problem = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                async with self._session.post(url.strip(), json=notice.payload,
                                              timeout=aiohttp.ClientTimeout(total=hook.timeout_seconds)) as resp:
                    if resp.status < 300:
                        opmetrics.NOTIFICATIONS.labels("sent").inc()
                        return
                    problem = f"HTTP {resp.status}"
                    if resp.status < 500 and resp.status not in RETRIED_STATUSES:
                        break
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc or 'timeout'}"
        opmetrics.NOTIFICATIONS.labels("failed").inc()
        log.warning("webhook %s of %s/%s: %s not delivered (%s)", hook.name, notice.namespace, notice.rollout,
                    notice.payload.get("reason", "message"), problem)

    async def drain(self) -> None:
        """Wait until every queued message was delivered or given up (tests, shutdown)."""
        await asyncio.gather(*(q.join() for q in self._queues.values()))
