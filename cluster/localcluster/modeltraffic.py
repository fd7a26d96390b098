"""Steady Open Inference Protocol (V2) traffic with delayed ground-truth feedback, for e2e tests
and the demo.

Simulated clients each keep one keep-alive connection for a burst of requests, then send the
labels of that burst as one feedback batch with the answers' prediction tokens, on a fresh
connection - so the Service may hand it to any pod of the rollout, and the token still counts
each label for the version that predicted - and reconnect, so the Service balances the next
burst afresh. Results are counted per model version (from the response body).
With `abort_fraction`, that share of requests is abandoned mid-upload instead (headers and half the
body, then the connection closes), as a client behind a timing-out load balancer would.

    stats = ModelTraffic(url, "fraud", rows, labels, rate=60)
    task = asyncio.ensure_future(stats.run(stop, max_seconds=300))
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp


@dataclass
class VersionStats:
    ok: int = 0
    failed: int = 0  # 5xx or transport errors after the request reached the version
    latencies: list[float] = field(default_factory=list)
    feedback_sent: int = 0
    correct: int = 0  # answers whose predicted class equals the held-out label (client-side truth)


@dataclass
class TrafficStats:
    by_version: dict[str, VersionStats] = field(default_factory=lambda: defaultdict(VersionStats))
    transport_errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    timeline: list[tuple[float, str, bool]] = field(default_factory=list)  # (t, version, ok)
    aborted_uploads: int = 0  # requests abandoned mid-body on purpose (abort_fraction)
    feedback_refused: int = 0  # labels of feedback batches answered 4xx (a refused token)
    not_json: Counter[str] = field(default_factory=Counter)  # "status first-bytes" of answers not from a server
    not_json_below_500: int = 0  # those of them a 5xx does not already count as failed
    error_times: list[tuple[float, str]] = field(default_factory=list)  # (t, what) of every failure

    @property
    def failures(self) -> int:
        statuses = sum(n for s, n in self.statuses.items() if s >= 500)
        return sum(self.transport_errors.values()) + statuses + self.not_json_below_500

    def explain(self) -> str:
        """What failed, for an assertion message: statuses, transport errors, answers that were not JSON."""
        return (f"statuses {dict(self.statuses)}, transport errors {dict(self.transport_errors)}, "
                f"not JSON {dict(self.not_json)}, first failures at {self.error_times[:5]}")

    def share(self, version: str, since: float = 0.0) -> float:
        window = [v for t, v, _ in self.timeline if t >= since]
        return window.count(version) / len(window) if window else 0.0


# (version, token, label, whether the prediction was right) of one answered request
Answered = tuple[str, str, Any, bool]
# The numeric outcomes posted for one prediction, from whether it was right: e.g. {"revenue": 12.5}
Outcome = Callable[[bool, random.Random], dict[str, float]]


def revenue_after(right: bool, rng: random.Random) -> dict[str, float]:
    """A simulated user's spend after an answer (`traffic.py --revenue`, the outcome e2e test): more after a right
    one, a refund (negative) now and then. From the answer's correctness only, so a more accurate version earns
    more without the client knowing versions: at 80% and 92% accuracy the means are 17 and 18.8."""
    return {"revenue": round(rng.gauss(20.0, 5.0) if right else rng.gauss(5.0, 5.0), 2)}


def _first_prediction(payload: dict[str, Any]) -> Any:
    try:
        return payload["outputs"][0]["data"][0]
    except (KeyError, IndexError, TypeError):
        return None


class ModelTraffic:
    def __init__(self, base_url: str, model: str, rows: list[list[float]], labels: list[Any], rate: float,
                 clients: int = 8, burst: int = 10, label_fraction: float = 1.0, seed: int = 7,
                 abort_fraction: float = 0.0, headers: dict[str, str] | None = None,
                 outcome: Outcome | None = None) -> None:
        """`outcome`: numeric outcomes to post with each label, drawn from whether the answer was right (as a
        user's spend follows a good recommendation), never from the version that answered."""
        self.url = base_url.rstrip("/")
        self.outcome = outcome
        self.headers = dict(headers or {})  # sent with every request (e.g. a header route's marker)
        self.model = model
        self.rows, self.labels = rows, labels
        self.rate, self.clients, self.burst = rate, clients, burst
        self.label_fraction = label_fraction
        self.abort_fraction = abort_fraction
        self.random = random.Random(seed)
        self.stats = TrafficStats()

    def _body(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}

    async def _infer(self, session: aiohttp.ClientSession, index: int) -> tuple[str, str, bool] | None:
        """(version, prediction token, whether the prediction was right) of an answered request."""
        started = time.monotonic()
        try:
            async with session.post(f"{self.url}/v2/models/{self.model}/infer", json=self._body(index)) as resp:
                self.stats.statuses[resp.status] += 1
                body = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.stats.transport_errors[type(exc).__name__] += 1
            # The message too ("Connection reset by peer", "Server disconnected"): the type alone does not
            # say whether the server closed a connection the client was about to reuse.
            self.stats.error_times.append((time.monotonic(), f"{type(exc).__name__}: {str(exc)[:120]}"))
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            # Not the model server's answer (a gateway's or proxy's own page): a failure, kept with its
            # status and first bytes so a failed test says who answered.
            self.stats.not_json[f"{resp.status} {body[:40]!r}"] += 1
            self.stats.not_json_below_500 += resp.status < 500
            self.stats.error_times.append((time.monotonic(), f"{resp.status} not JSON"))
            return None
        # The server names its version on every answer, failures included.
        version = resp.headers.get("X-Model-Version") or (
            str(payload.get("model_version", "?")) if isinstance(payload, dict) else "?")
        stats = self.stats.by_version[version]
        ok = resp.status < 500
        stats.ok += ok
        stats.failed += not ok
        stats.latencies.append(time.monotonic() - started)
        self.stats.timeline.append((time.monotonic(), version, ok))
        if resp.status == 200 and isinstance(payload, dict):
            right = _first_prediction(payload) == self.labels[index]
            stats.correct += right
            token = (payload.get("parameters") or {}).get("prediction_token")
            return (version, token, right) if isinstance(token, str) else None
        return None

    async def _abort_upload(self, index: int) -> None:
        """Declare the whole body, send half of it, and hang up (a new connection, so any pod may get it)."""
        body = json.dumps(self._body(index)).encode()
        target = urlsplit(self.url)
        head = (f"POST {target.path}/v2/models/{self.model}/infer HTTP/1.1\r\nHost: {target.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.hostname, target.port or 80), 5)
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            self.stats.transport_errors[type(exc).__name__] += 1
            return
        self.stats.aborted_uploads += 1

    async def _client(self, stop: asyncio.Event, deadline: float) -> None:
        interval = self.clients / self.rate
        while not stop.is_set() and time.monotonic() < deadline:
            connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection: one pod per burst
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10),
                                             headers=self.headers) as s:
                answered: list[Answered] = []
                for _ in range(self.burst):
                    if stop.is_set() or time.monotonic() >= deadline:
                        break
                    index = self.random.randrange(len(self.rows))
                    if self.random.random() < self.abort_fraction:
                        await self._abort_upload(index)
                    elif (result := await self._infer(s, index)) is not None:
                        version, token, right = result
                        answered.append((version, token, self.labels[index], right))
                    await asyncio.sleep(interval * self.random.uniform(0.5, 1.5))
            await self._feedback(answered)

    async def _feedback(self, answered: list[Answered]) -> None:
        """The burst's labels (and outcomes) by token, on a new connection: whichever pod gets them counts them."""
        chosen = [a for a in answered if self.random.random() < self.label_fraction]
        if not chosen:
            return
        items = [{"token": token, "label": label,
                  **({"outcome": self.outcome(right, self.random)} if self.outcome is not None else {})}
                 for _v, token, label, right in chosen]
        url = f"{self.url}/v2/models/{self.model}/feedback"
        try:
            async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=self.headers) as s,
                        s.post(url, json={"feedback": items}) as resp):
                await resp.read()
                if resp.status != 200:
                    self.stats.feedback_refused += len(items)
                    return
        except (aiohttp.ClientError, OSError, TimeoutError):
            return
        for version, *_ in chosen:
            self.stats.by_version[version].feedback_sent += 1

    async def run(self, stop: asyncio.Event, max_seconds: float) -> TrafficStats:
        deadline = time.monotonic() + max_seconds
        await asyncio.gather(*(self._client(stop, deadline) for _ in range(self.clients)))
        return self.stats
