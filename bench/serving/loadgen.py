"""Load generators for the serving benchmark: wrk (preferred) or a Python fallback, both closed-loop.

`concurrency` connections post the same body for `duration` seconds, loopback only, each in its own
process. Both give the same JSON result: requests, errors, rps, p50_ms, p99_ms.

wrk is preferred because it is C: a Python generator on this 2-core machine spends about as much CPU per
request as the server it drives, which capped the measured rate (1,895 req/s with the Python generator,
2,650 with wrk, same server build). `ensure_wrk` finds wrk, or installs the Debian package when running
as root with apt-get, or returns None so the caller falls back to the Python generator with a warning.

Run as a script, this file is the Python generator (prints one JSON line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

WRK_SCRIPT = Path(__file__).with_name("post.lua")


def _apt_install_wrk() -> bool:
    for command in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "wrk"]):
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
        if result.returncode == 0 and command[1] == "install":
            return True
    print(f"[bench] apt-get could not install wrk: {result.stderr.strip()[-300:]}", flush=True)
    return False


def ensure_wrk() -> str | None:
    """The path of wrk: found on PATH, or installed with apt-get when root; None when neither works."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("[bench] wrk not found: installing the Debian package (apt-get install wrk)...", flush=True)
        if _apt_install_wrk():
            return shutil.which("wrk")
    return None


def run_wrk(wrk: str, url: str, body_file: Path, concurrency: int, duration: float,
            think_ms: float = 0.0) -> dict[str, float]:
    """One wrk run (one thread, `concurrency` connections, bounded by `duration`) -> result dict.

    `think_ms`: each connection's mean pause between requests (post.lua), 0 for back-to-back requests."""
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit("loopback only")
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--timeout", "10s", "-s", str(WRK_SCRIPT),
               url]
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         env={**os.environ, "BODY_FILE": str(body_file), "THINK_MS": f"{think_ms:g}"},
                         timeout=duration + 30)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_python(url: str, body_file: Path, concurrency: int, duration: float,
               think_ms: float = 0.0) -> dict[str, float]:
    """One run of the Python generator below, in a second process."""
    out = subprocess.run([sys.executable, __file__, "--url", url, "--body-file", str(body_file),
                          "--concurrency", str(concurrency), "--duration", str(duration),
                          "--think-ms", str(think_ms)],
                         check=True, capture_output=True, text=True, timeout=duration + 60)
    result: dict[str, float] = json.loads(out.stdout)
    return result


async def _client(session: aiohttp.ClientSession, url: str, body: bytes, stop_at: float, budget: list[int],
                  latencies: list[float], errors: list[int], think_ms: float) -> None:
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < stop_at and budget[0] > 0:
        if think_ms > 0:
            await asyncio.sleep(random.expovariate(1000 / think_ms))
        budget[0] -= 1
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                errors[0] += 1
        latencies.append(time.perf_counter() - started)


async def run(url: str, body: bytes, concurrency: int, duration: float, max_requests: int,
              think_ms: float = 0.0) -> dict[str, float]:
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
        await asyncio.gather(*(_client(session, url, body, started + duration, budget, latencies, errors, think_ms)
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
    parser.add_argument("--think-ms", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    print(json.dumps(asyncio.run(run(args.url, body, args.concurrency, args.duration, args.max_requests,
                                     args.think_ms))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
