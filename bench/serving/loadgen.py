"""Closed-loop load generator: `concurrency` clients post the same body for `duration` seconds.

Runs in its own process so it does not share an event loop with the server. Bounded in time and in
count (`--max-requests`), loopback only. Prints one JSON line: requests, errors, rps, p50/p99 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


async def _client(session: aiohttp.ClientSession, url: str, body: bytes, stop_at: float, budget: list[int],
                  latencies: list[float], errors: list[int]) -> None:
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                errors[0] += 1
        latencies.append(time.perf_counter() - started)


async def run(url: str, body: bytes, concurrency: int, duration: float, max_requests: int) -> dict[str, float]:
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit("loopback only")
    latencies: list[float] = []
    errors, budget = [0], [max_requests]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(3):  # warm connections and the server's caches
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(_client(session, url, body, started + duration, budget, latencies, errors)
                               for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / elapsed,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    args = parser.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    print(json.dumps(asyncio.run(run(args.url, body, args.concurrency, args.duration, args.max_requests))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
