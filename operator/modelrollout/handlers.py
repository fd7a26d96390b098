"""kopf handlers: thin translations between kopf and reconcile.tick.

The watch of ModelRollouts (an event handler) hands each rollout's latest body to one TickScheduler
(scheduler.py), which is the only writer of progress: it ticks a rollout when its decided wake-up time has
come, its spec changed, or a manual command waits, and costs nothing for a rollout in between (a kopf timer per
rollout woke every second whether or not it was due).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import kubernetes

from modelrollout import blocking, opmetrics
from modelrollout.core.phases import Event
from modelrollout.kube import GROUP, PLURAL, VERSION, KubeAdapter, OwnershipConflictError, PermissionDeniedError
from modelrollout.notify import Notifier
from modelrollout.reconcile import Context, has_pending_change, is_due, tick
from modelrollout.scheduler import Retry, TickScheduler
from modelrollout.sources import all_sources

log = logging.getLogger(__name__)
PREFIX = "modelrollout.dev"
TICK_SECONDS = 1.0
WATCH_NAMESPACES: tuple[str, ...] = ()  # set by main from --namespace; empty: all namespaces
WATCH_CACHE = False  # set by main from --watch-cache (experimental, see kubecache)
API_WORKERS = 32  # blocking Kubernetes calls in flight at once (a tick makes about five)


class _QuietTimerSuccess(logging.Filter):
    """kopf logs every successful handler run at INFO. For the watch handler that is a line per rollout
    event that says nothing (it was a line per rollout per second for the timer this replaced, a sixth of a
    settled operator's CPU at 1,000 rollouts in make bench-operator); failures and the rollouts' events are
    still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in QUIET_LINES


QUIET_LINES = frozenset({"Handler 'watch' succeeded."})


_QUIET_TIMER = _QuietTimerSuccess()  # one instance: addFilter() on a restart keeps a single copy


@kopf.on.startup(id="configure")
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own prefix and finalizer from day one: changing them later makes kopf see every object anew.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    # Silent watch streams are a known kopf problem: make the server end them regularly.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.WARNING
    logging.getLogger("kopf.objects").addFilter(_QUIET_TIMER)
    # Blocking client calls run through asyncio.to_thread, i.e. the loop's default executor, which
    # is sized by the CPU count (6 threads on 2 cores): 30 rollouts ticking together queued there
    # for seconds while the operator used little CPU. Size it, and the connection pool, for I/O.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=API_WORKERS, thread_name_prefix="kube-api"))
    kube = KubeAdapter(_api_client())
    if WATCH_CACHE:
        kube.start_cache(WATCH_NAMESPACES)
    memo.ctx = Context(kube=kube, source=all_sources(), notifier=Notifier(
        lambda ns, ref: blocking.run(kube.secret_value, ns, ref.name, ref.key)))
    memo.lag_watch = asyncio.get_running_loop().create_task(blocking.watch_loop_lag())  # held: not collected
    memo.loggers = {}  # the watch's per-rollout logger (kopf's, which also posts warnings as Events), by uid
    memo.scheduler = TickScheduler(
        run_tick=lambda uid, body: reconcile_once(memo.ctx, body, memo.loggers.get(uid) or log),
        is_due=lambda body: is_due(memo.ctx, body, dt.datetime.now(dt.UTC)), has_change=has_pending_change,
        spacing=TICK_SECONDS)
    memo.scheduler_task = asyncio.get_running_loop().create_task(memo.scheduler.run(), name="tick-scheduler")


@kopf.on.cleanup(id="stop-scheduler")
async def stop_scheduler(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "scheduler_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _api_client() -> kubernetes.client.ApiClient:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    config = kubernetes.client.Configuration.get_default_copy()
    config.connection_pool_maxsize = API_WORKERS  # one pooled connection per worker thread
    return kubernetes.client.ApiClient(config)


@kopf.on.login(id="login")
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """One source of credentials for kopf and the adapter: the official client's configuration."""
    return kopf.login_via_client(**kwargs)


@kopf.on.event(GROUP, VERSION, PLURAL, id="watch")
def watch(event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Every event of every ModelRollout (the listing at start included): the scheduler keeps the latest body
    and ticks the rollout at once if this change makes it due. Nothing blocks here: kopf's watch waits."""
    obj = event["object"]
    uid = obj["metadata"]["uid"]
    if event["type"] == "DELETED":
        memo.scheduler.forget(uid)
        memo.loggers.pop(uid, None)
        return
    memo.loggers[uid] = logger
    memo.scheduler.observe(uid, obj)


async def reconcile_once(ctx: Context, body: dict[str, Any], logger: logging.Logger | kopf.Logger) -> float | None:
    """One tick of one rollout if it is due; the monotonic time it should tick next (None: at its next change).
    A failure worth retrying raises Retry with the delay, after showing it where users look."""
    now = dt.datetime.now(dt.UTC)
    # is_due only reads, so the tick's own copy is made only for a tick that runs (the copy of a body with its
    # analysis state was a fifth of the operator's CPU with 50 rollouts in canary, make bench-operator).
    if is_due(ctx, body, now):
        raw = copy.deepcopy(body)
        await _tick(ctx, raw, now, logger)
    wake = ctx.next_tick.get(body["metadata"]["uid"])
    if wake is None or body["metadata"].get("deletionTimestamp"):
        return None
    return time.monotonic() + max(0.0, (wake - dt.datetime.now(dt.UTC)).total_seconds())


async def _tick(ctx: Context, raw: dict[str, Any], now: dt.datetime, logger: logging.Logger | kopf.Logger) -> None:
    started = time.monotonic()
    try:
        decision = await tick(ctx, raw, now)
    except PermissionDeniedError as exc:
        opmetrics.RECONCILE_ERRORS.labels("Forbidden").inc()
        logger.error("%s", exc)
        await _report_problem(ctx, raw, "PermissionDenied", str(exc))
        raise Retry(10) from None
    except OwnershipConflictError as exc:
        opmetrics.RECONCILE_ERRORS.labels("Conflict").inc()
        logger.error("%s", exc)
        await _report_problem(ctx, raw, "Conflict", str(exc))
        raise Retry(10) from None
    except kubernetes.client.ApiException as exc:
        opmetrics.RECONCILE_ERRORS.labels("ApiError").inc()
        if exc.status == 409:  # someone wrote meanwhile: the next tick sees the new state
            raise Retry(TICK_SECONDS) from None
        message = f"API error {exc.status} {exc.reason}: {_api_message(exc)}"
        logger.error("%s", message)
        await _report_problem(ctx, raw, "ApiError", message)
        raise Retry(2) from None
    finally:
        opmetrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    ctx.reported.pop(raw["metadata"]["uid"], None)
    for event in decision.events:
        logger.info("%s: %s", event.reason, event.message)


def _api_message(exc: kubernetes.client.ApiException) -> str:
    """The apiserver's own explanation (Status.message), which names what was wrong."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


async def _report_problem(ctx: Context, body: dict[str, Any], reason: str, message: str) -> None:
    """Show an error where users look (an Event and the status message), not only in the operator's
    log; once per distinct message, since the failing tick is retried every few seconds."""
    meta = body["metadata"]
    if ctx.reported.get(meta["uid"]) == message:
        return
    ctx.reported[meta["uid"]] = message
    with contextlib.suppress(PermissionDeniedError, kubernetes.client.ApiException):
        await blocking.run(ctx.kube.post_event, body, Event("Warning", reason, message))
    with contextlib.suppress(PermissionDeniedError, kubernetes.client.ApiException):
        await blocking.run(ctx.kube.patch_status, meta["namespace"], meta["name"], {"message": message})


@kopf.on.delete(GROUP, VERSION, PLURAL, id="release-services")
async def release_services(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Give adopted Services their original selectors back before the rollout goes (the finalizer
    holds it until then); the Services it created go with it by garbage collection."""
    ctx: Context = memo.ctx
    try:
        released = await blocking.run(ctx.kube.release_services, copy.deepcopy(dict(body)))
    except PermissionDeniedError as exc:
        logger.error("%s", exc)
        raise kopf.TemporaryError(str(exc), delay=10) from None
    for name in released:
        logger.info("Service %s has its original selector back", name)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="forget", optional=True)
def forget(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Drop in-memory state; the Deployments and owned Services go by garbage collection."""
    ctx: Context = memo.ctx
    memo.scheduler.forget(meta["uid"])
    ctx.next_tick.pop(meta["uid"], None)
    ctx.reported.pop(meta["uid"], None)
    ctx.kube.forget(meta["uid"])
    ctx.source.forget(f"{meta['namespace']}/{meta['name']}")
    ctx.drift.forget(f"{meta['namespace']}/{meta['name']}")
    opmetrics.forget(meta["namespace"], meta["name"])
