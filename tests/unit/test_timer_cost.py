"""A rollout that is not due costs next to nothing: no copy of its body, no call (make bench-operator: with
hundreds of rollouts the copy alone was a fifth of the operator's CPU); kopf's success lines are dropped."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelrollout import handlers
from modelrollout.reconcile import Context

pytestmark = pytest.mark.unit


def test_a_look_at_a_rollout_that_is_not_due_does_not_copy_it_and_returns_its_wake_up_time() -> None:
    # A lock cannot be deep-copied: the run below raises if the timer copies the body before asking is_due.
    body: dict[str, Any] = {"metadata": {"uid": "u1", "generation": 3}, "spec": {"uncopyable": threading.Lock()},
                            "status": {"observedGeneration": 3}}
    adapter: Any = None  # not reached: a rollout that is not due makes no call
    ctx = Context(kube=adapter, source=adapter, next_tick={"u1": datetime.now(UTC) + timedelta(minutes=1)})
    before = time.monotonic()
    wake = asyncio.run(handlers.reconcile_once(ctx, body, logging.getLogger("t")))
    assert wake is not None and 55 < wake - before < 61


def test_kopf_success_lines_of_the_watch_handler_are_dropped_and_other_lines_kept() -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    assert not handlers._QUIET_TIMER.filter(record("Handler 'watch' succeeded."))
    assert handlers._QUIET_TIMER.filter(record("Handler 'release-services' succeeded."))
    assert handlers._QUIET_TIMER.filter(record("Promoted: version 2 promoted; replaced version 1"))
