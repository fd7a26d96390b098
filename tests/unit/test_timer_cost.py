"""The per-rollout 1 s reconcile timer costs next to nothing when its rollout is not due (make bench-operator:
with hundreds of rollouts this timer runs hundreds of times a second)."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from modelrollout import handlers
from modelrollout.reconcile import Context

pytestmark = pytest.mark.unit


def test_a_timer_run_that_is_not_due_does_not_copy_the_rollout() -> None:
    # A lock cannot be deep-copied: the run below raises if the timer copies the body before asking is_due.
    body: dict[str, Any] = {"metadata": {"uid": "u1", "generation": 3}, "spec": {"uncopyable": threading.Lock()},
                            "status": {"observedGeneration": 3}}
    adapter: Any = None  # not reached: a rollout that is not due makes no call
    ctx = Context(kube=adapter, source=adapter, next_tick={"u1": datetime.now(UTC) + timedelta(minutes=1)})
    memo: Any = SimpleNamespace(ctx=ctx)
    assert asyncio.run(handlers.reconcile_timer(body=body, memo=memo, logger=logging.getLogger("t"))) is None


def test_kopf_success_lines_of_the_reconcile_timer_are_dropped_and_other_lines_kept() -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    assert not handlers._QUIET_TIMER.filter(record("Timer 'reconcile' succeeded."))
    assert handlers._QUIET_TIMER.filter(record("Handler 'release-services' succeeded."))
    assert handlers._QUIET_TIMER.filter(record("Promoted: version 2 promoted; replaced version 1"))
