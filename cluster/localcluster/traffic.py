"""Traffic through the local cluster's Services, and poking at pods, for tests and the demo.

    report = send_requests("http://10.96.0.12/", count=300)
    report.by_pod        # {"web-abc": 101, ...} from the X-Pod response header
    report.failures      # requests that got no HTTP answer or a 5xx

Each request opens a new connection, so the service proxy picks an endpoint per request, as
kube-proxy does per connection. Loops are bounded in count and time (loopback/namespace only).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class TrafficReport:
    statuses: Counter[int] = field(default_factory=Counter)
    by_pod: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors by exception type
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failures(self) -> int:
        return sum(self.errors.values()) + sum(n for code, n in self.statuses.items() if code >= 500)

    def share(self, predicate: Callable[[str], bool]) -> float:
        served = sum(self.by_pod.values())
        return sum(n for pod, n in self.by_pod.items() if predicate(pod)) / served if served else 0.0

    def p99(self) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100)[98]


async def _one(session: aiohttp.ClientSession, method: str, url: str, body: Any, header: str,
               report: TrafficReport) -> None:
    started = time.monotonic()
    try:
        async with session.request(method, url, json=body) as resp:
            await resp.read()
            report.statuses[resp.status] += 1
            report.by_pod[resp.headers.get(header, "?")] += 1
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        report.errors[type(exc).__name__] += 1
    report.latencies.append(time.monotonic() - started)


def _session(timeout: float) -> aiohttp.ClientSession:
    # force_close: a new connection per request, so each one is balanced on its own.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0),
                                 timeout=aiohttp.ClientTimeout(total=timeout))


async def send_requests_async(url: str, count: int, concurrency: int = 8, method: str = "GET",
                              body: Any = None, header: str = "X-Pod", timeout: float = 10) -> TrafficReport:
    report = TrafficReport()
    queue = iter(range(count))
    async with _session(timeout) as session:

        async def worker() -> None:
            for _ in queue:
                await _one(session, method, url, body, header, report)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return report


def send_requests(url: str, count: int, **kwargs: Any) -> TrafficReport:
    return asyncio.run(send_requests_async(url, count, **kwargs))


async def steady_traffic(url: str, rate: float, stop: asyncio.Event, max_seconds: float, method: str = "GET",
                         body: Any = None, header: str = "X-Pod", timeout: float = 10,
                         report: TrafficReport | None = None) -> TrafficReport:
    """About `rate` requests/s until `stop` is set or `max_seconds` pass; returns what happened.

    Pass `report` to watch it fill while the traffic runs."""
    report = report if report is not None else TrafficReport()
    pending: set[asyncio.Task[None]] = set()
    deadline = time.monotonic() + max_seconds
    async with _session(timeout) as session:
        while not stop.is_set() and time.monotonic() < deadline:
            task = asyncio.ensure_future(_one(session, method, url, body, header, report))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(1.0 / rate)
        if pending:
            await asyncio.wait(pending)
    return report


def container_pid(pod: dict[str, Any], container: str | None = None) -> int:
    for status in pod["status"].get("containerStatuses") or []:
        if container in (None, status["name"]) and status.get("containerID", "").startswith("process://"):
            return int(status["containerID"].removeprefix("process://"))
    raise LookupError(f"pod {pod['metadata']['name']} has no running container {container or ''}")


def kill_pod_process(pod: dict[str, Any], container: str | None = None, sig: int = signal.SIGKILL) -> int:
    """Simulate a crash: signal the container's process (its whole process group)."""
    pid = container_pid(pod, container)
    os.killpg(pid, sig)
    return pid


def pod_log(kubelet_workdir: Path, namespace: str, pod_name: str, container: str) -> str:
    """The container's output as the process kubelet stored it (all restarts, oldest first)."""
    matches = sorted((kubelet_workdir / "pods").glob(f"{namespace}_{pod_name}_*/logs/{container}.log"))
    return "".join(p.read_text(errors="replace") for p in matches)


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """wait_until for a coroutine that must not block its event loop (traffic runs on it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def read_metrics_async(pod_ip: str, port: int, path: str = "/metrics", timeout: float = 5) -> str:
    async with _session(timeout) as session, session.get(f"http://{pod_ip}:{port}{path}") as resp:
        resp.raise_for_status()
        return await resp.text()


def read_metrics(pod_ip: str, port: int, path: str = "/metrics", timeout: float = 5) -> str:
    return asyncio.run(read_metrics_async(pod_ip, port, path, timeout))
