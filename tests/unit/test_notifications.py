"""spec.notifications: parsing (fields named like admission does), payloads, and delivery to a real
HTTP receiver on loopback - retries with backoff, a final 4xx, a hanging receiver that holds up no
other webhook, and a full queue that drops and counts."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from modelrollout import opmetrics
from modelrollout.analysis.sourceconfig import SecretKeyRef
from modelrollout.core.notifications import Format, Webhook, parse_notifications
from modelrollout.core.phases import Event, Phase
from modelrollout.core.spec import RolloutSpec
from modelrollout.core.status import RolloutStatus
from modelrollout.notify import Notice, Notifier, notices, payload

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
BODY = {"metadata": {"namespace": "ml", "name": "fraud"}}


def test_a_full_webhook_is_parsed_and_defaults_apply() -> None:
    [hook] = parse_notifications([{"name": "team", "urlFrom": {"secretKeyRef": {"name": "slack", "key": "url"}},
                                   "format": "slack", "reasons": ["Promoted", "RolledBack"], "timeout": "2s"}])
    assert hook == Webhook(name="team", url_secret=SecretKeyRef("slack", "url"), format=Format.SLACK,
                           reasons=frozenset({"Promoted", "RolledBack"}), timeout_seconds=2.0)
    [plain] = parse_notifications([{"name": "ci", "url": "https://ci.example/hook"}])
    assert plain.format is Format.JSON and plain.timeout_seconds == 5.0 and plain.wants("StepCompleted", None)
    assert not hook.wants("StepCompleted", None) and hook.wants("Promoted", None)
    [phased] = parse_notifications([{"name": "x", "url": "http://x", "phases": ["RolledBack"]}])
    assert phased.wants("AnalysisFailed", "RolledBack") and not phased.wants("AnalysisFailed", None)


@pytest.mark.parametrize(("raw", "field"), [
    ([{"name": "a"}], "spec.notifications[0]: exactly one of url and urlFrom"),
    ([{"name": "A", "url": "http://x"}], "spec.notifications[0].name"),
    ([{"name": "a", "url": "http://x", "timeout": "1m"}], "spec.notifications[0].timeout"),
    ([{"name": "a", "url": "http://x", "reasons": ["promoted"]}], "spec.notifications[0].reasons"),
    ([{"name": "a", "url": "http://x", "phases": ["Done"]}], "spec.notifications[0].phases"),
    ([{"name": "a", "urlFrom": {"secretKeyRef": {"name": "s"}}}], "spec.notifications[0].urlFrom.secretKeyRef.key"),
    ([{"name": f"h{i}", "url": "http://x"} for i in range(11)], "spec.notifications: a list of at most 10"),
])
def test_bad_webhooks_are_refused_naming_the_field(raw: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_notifications(raw)


def test_the_spec_carries_its_webhooks() -> None:
    spec = RolloutSpec.from_dict({"model": {"name": "f", "version": "1", "uri": "http://s/m.skops"},
                                  "service": {"name": "f"}, "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
                                  "notifications": [{"name": "ci", "url": "http://ci/hook"}]})
    assert [h.name for h in spec.notifications] == ["ci"]


def test_the_json_payload_has_the_event_the_versions_and_the_analysis_numbers() -> None:
    status = RolloutStatus.from_dict({
        "phase": "Healthy", "stableModel": {"version": "1", "uri": "http://s/m.skops"}, "desiredWeight": 0,
        "analysis": {"results": [{"name": "error-rate", "verdict": "Fail", "message": "3.1% vs 0.5%",
                                  "canarySamples": 400}]}})
    body = payload(Format.JSON, "ml", "fraud", Event("Warning", "RolledBack", "canary error rate 3.1% vs 0.5%"),
                   "fraud.1", status, NOW)
    assert body["reason"] == "RolledBack" and body["type"] == "Warning" and body["stableVersion"] == "1"
    assert body["rollout"] == {"namespace": "ml", "name": "fraud"} and body["id"] == "fraud.1"
    assert body["analysis"][0]["canarySamples"] == 400
    rolled_back = RolloutStatus.from_dict({"phase": "RolledBack"})
    slack = payload(Format.SLACK, "ml", "fraud", Event("Warning", "AnalysisFailed", "why"), "x", rolled_back, NOW)
    assert slack == {"text": ":rotating_light: *ml/fraud* AnalysisFailed: why"}


def test_only_wanted_reasons_become_notices() -> None:
    hooks = parse_notifications([{"name": "all", "url": "http://a"},
                                 {"name": "final", "url": "http://b", "reasons": ["Promoted"]}])
    events = [(Event("Normal", "StepCompleted", "step 1/3"), "e1"), (Event("Normal", "Promoted", "v2"), "e2")]
    got = notices(BODY, hooks, events, RolloutStatus(phase=Phase.HEALTHY), NOW)
    assert [(n.webhook.name, n.payload["reason"]) for n in got] == [
        ("all", "StepCompleted"), ("all", "Promoted"), ("final", "Promoted")]
    rollback = parse_notifications([{"name": "alarm", "url": "http://c", "phases": ["RolledBack"]}])
    failed = [(Event("Warning", "AnalysisFailed", "v2 rolled back"), "e3")]
    entering = {**BODY, "status": {"phase": "Progressing"}}
    assert len(notices(entering, rollback, failed, RolloutStatus(phase=Phase.ROLLED_BACK), NOW)) == 1
    staying = {**BODY, "status": {"phase": "RolledBack"}}
    assert notices(staying, rollback, failed, RolloutStatus(phase=Phase.ROLLED_BACK), NOW) == []


class Receiver:
    """A real HTTP receiver on loopback: answers each POST with the next status of `script`."""

    def __init__(self, script: Callable[[int], int], delay: float = 0.0) -> None:
        self.script, self.delay, self.bodies = script, delay, []  # type: list[dict[str, Any]]
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        status = self.script(self.attempts)
        await asyncio.sleep(self.delay)
        if status < 300:
            self.bodies.append(await request.json())
        return web.json_response({}, status=status)


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


def _notice(url: str, reason: str = "Promoted", timeout: float = 2.0, name: str = "h") -> Notice:
    return Notice("ml", "fraud", Webhook(name=name, url=url, timeout_seconds=timeout), {"reason": reason})


def _count(outcome: str) -> float:
    return opmetrics.NOTIFICATIONS.labels(outcome)._value.get()


async def _no_secret(ns: str, ref: SecretKeyRef) -> str:
    raise AssertionError("no secret expected")


def test_failures_are_retried_with_backoff_until_delivered_in_order() -> None:
    async def main() -> Receiver:
        receiver = Receiver(lambda n: 503 if n <= 2 else 200)
        async with serving(receiver) as url:
            notifier = Notifier(_no_secret, backoff_seconds=0.01)
            notifier.submit([_notice(url, "StepCompleted"), _notice(url, "Promoted")])
            await asyncio.wait_for(notifier.drain(), 10)
        return receiver
    sent = _count("sent")
    receiver = asyncio.run(main())
    assert [b["reason"] for b in receiver.bodies] == ["StepCompleted", "Promoted"]
    assert receiver.attempts == 4 and _count("sent") == sent + 2


def test_a_refusal_is_final_and_counted_as_failed() -> None:
    async def main() -> Receiver:
        receiver = Receiver(lambda n: 400)
        async with serving(receiver) as url:
            notifier = Notifier(_no_secret, backoff_seconds=0.01)
            notifier.submit([_notice(url)])
            await asyncio.wait_for(notifier.drain(), 10)
        return receiver
    failed = _count("failed")
    assert asyncio.run(main()).attempts == 1 and _count("failed") == failed + 1


def test_a_hanging_receiver_holds_up_neither_the_caller_nor_another_webhook() -> None:
    async def main() -> tuple[float, Receiver]:
        slow, fast = Receiver(lambda n: 200, delay=5), Receiver(lambda n: 200)
        async with serving(slow) as slow_url, serving(fast) as fast_url:
            notifier = Notifier(_no_secret, backoff_seconds=0.01)
            started = asyncio.get_running_loop().time()
            notifier.submit([_notice(slow_url, timeout=0.2, name="slow"), _notice(fast_url, name="fast")])
            submitted = asyncio.get_running_loop().time() - started
            while not fast.bodies:
                await asyncio.sleep(0.01)
            return submitted, fast
    submitted, fast = asyncio.run(main())
    assert submitted < 0.05 and fast.bodies == [{"reason": "Promoted"}]


def test_a_full_queue_drops_and_counts() -> None:
    async def main() -> None:
        notifier = Notifier(_no_secret, backoff_seconds=0.01)
        notifier.submit([_notice("http://127.0.0.1:9/hook", timeout=0.1) for _ in range(105)])
    dropped = _count("dropped")
    asyncio.run(main())
    assert _count("dropped") >= dropped + 4  # 100 queued (one may already be taken by the worker)
