"""Post delayed ground-truth labels to a model's Service, as a nightly batch job or a warehouse export would.

    python examples/models/send_labels.py --url http://fraud --model fraud --labels labels.json

`labels.json` is a list of {"token": <the prediction token of the answer>, "label": <true class or value>}.
Each batch is one POST to /v2/models/<model>/feedback on a fresh connection, so the Service may hand it to
any pod of the rollout: the token says which version predicted, so the label counts for that version
wherever it lands (docs/metrics.md). Standard library only, so it runs in any Python image.
Prints one JSON line of totals; exits 0 when every batch was accepted, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any


def post(url: str, items: list[dict[str, Any]], timeout: float) -> tuple[int, dict[str, Any]]:
    """One batch; urllib opens a new connection per request."""
    request = urllib.request.Request(url, data=json.dumps({"feedback": items}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(json.load(response))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.load(exc))


def send(url: str, model: str, labels: list[dict[str, Any]], batch: int, timeout: float) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    endpoint = f"{url.rstrip('/')}/v2/models/{model}/feedback"
    for start in range(0, len(labels), batch):
        status, answer = post(endpoint, labels[start:start + batch], timeout)
        statuses[status] += 1
        if status == 200:
            outcomes.update({k: v for k, v in answer.items() if isinstance(v, int)})
        else:
            outcomes.update(f"refused_{reason}" for reason in (answer.get("refused") or {}).values())
    return {"sent": len(labels), "statuses": {str(k): v for k, v in statuses.items()}, "outcomes": dict(outcomes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL of the model's Service")
    parser.add_argument("--model", required=True, help="model name (spec.model.name)")
    parser.add_argument("--labels", required=True, type=Path, help="JSON list of {token, label}")
    parser.add_argument("--batch", type=int, default=100, help="labels per request")
    parser.add_argument("--not-before", type=float, default=0.0,
                        help="unix time to start at: labels arrive late in real life")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--out", type=Path, help="also write the totals here")
    args = parser.parse_args(argv)
    labels = json.loads(args.labels.read_text())
    if (wait := args.not_before - time.time()) > 0:
        time.sleep(wait)
    totals = send(args.url, args.model, labels, args.batch, args.timeout)
    line = json.dumps(totals)
    print(line, flush=True)
    if args.out is not None:
        args.out.write_text(line)
    return 0 if set(totals["statuses"]) <= {"200"} else 1


if __name__ == "__main__":
    sys.exit(main())
