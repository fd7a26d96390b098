"""Send steady V2 inference traffic with delayed ground-truth feedback to a model's Service.

    python examples/models/traffic.py --url http://fraud --model fraud \
        --holdout http://model-store/holdout-classification.json --rate 20 --seconds 600

The analysis of a rollout needs requests (error rate, latency) and labels (accuracy): this sends
both, from the held-out rows train.py wrote (each burst's labels with the answers' prediction tokens,
on a new connection, so whichever pod receives them counts them for the version that predicted),
and prints one line of per-version counts every --report seconds. Runs in a pod
(examples/models/publish.py traffic) or from a shell that can reach the Service. Exits 0 after
--seconds, 1 if no request succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from localcluster.modeltraffic import ModelTraffic, TrafficStats, revenue_after


def load_holdout(source: str) -> dict[str, Any]:
    """The held-out rows from a URL or a file: {"X": [[...], ...], "y": [...]}."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:
            return dict(json.load(response))
    return dict(json.loads(Path(source).read_text()))


def summary(stats: TrafficStats) -> str:
    """One line: `v1 ok=120 failed=0 feedback=118 | v2 ok=40 ...`."""
    parts = [f"v{v} ok={s.ok} failed={s.failed} feedback={s.feedback_sent}"
             for v, s in sorted(stats.by_version.items())]
    errors = sum(stats.transport_errors.values())
    return " | ".join(parts or ["no answers yet"]) + (f" | transport errors={errors}" if errors else "")


async def drive(traffic: ModelTraffic, seconds: float, report: float) -> TrafficStats:
    stop = asyncio.Event()
    task = asyncio.ensure_future(traffic.run(stop, max_seconds=seconds))
    deadline = time.monotonic() + seconds
    while not task.done() and time.monotonic() < deadline:
        await asyncio.wait({task}, timeout=report)
        print(summary(traffic.stats), flush=True)
    stop.set()
    return await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL of the model's Service")
    parser.add_argument("--model", required=True, help="model name (spec.model.name)")
    parser.add_argument("--holdout", required=True, help="URL or file of holdout-classification.json")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--report", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument("--revenue", action="store_true",
                        help="post a simulated `revenue` outcome with each label (more after a right answer), for "
                             "an A/B experiment on an outcome goal (examples/ab-test-revenue.yaml)")
    args = parser.parse_args(argv)
    holdout = load_holdout(args.holdout)
    traffic = ModelTraffic(args.url, args.model, holdout["X"], holdout["y"], rate=args.rate, clients=4, burst=3,
                           outcome=revenue_after if args.revenue else None)
    stats = asyncio.run(drive(traffic, args.seconds, args.report))
    print("final:", summary(stats), flush=True)
    return 0 if any(s.ok for s in stats.by_version.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
