"""`--shard K/N`: run the K-th of N parts of the suite, whole test files at a time.

`make test` runs N pytest processes side by side, each in its own network namespace with its own local
cluster (hack/run-shards). Most of an e2e test's time is waiting (analysis intervals, pods starting), so
two clusters on the two cores finish in far less than one cluster's serial time.

Files, not tests, are the unit: a module's fixtures (an operator, a model store) are built once per
file, and splitting a file would build them in both shards. Files are dealt out greedily, longest first,
to the shard with the least time so far, from the per-file seconds in tests/durations.json (rewritten
by `--store-durations`); a file not listed there counts as the mean of its tier, so a new test file
lands somewhere sensible until the next measurement."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parent / "durations.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sharding")
    group.addoption("--shard", default=None, metavar="K/N", help="run only the K-th of N parts (1-based)")
    group.addoption("--store-durations", action="store_true",
                    help=f"write each test file's measured seconds into {DURATIONS.name}")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--shard {text!r}: expected K/N, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise pytest.UsageError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


def tier(path: str) -> str:
    """'e2e', 'serving' or 'unit': the directory under tests/."""
    parts = Path(path).parts
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


def assign(files: list[str], known: dict[str, float], shards: int) -> dict[str, int]:
    """File -> shard index (0-based): longest first, each to the shard with the least total so far."""
    by_tier: dict[str, list[float]] = defaultdict(list)
    for path, seconds in known.items():
        by_tier[tier(path)].append(seconds)
    fallback = {t: sum(v) / len(v) for t, v in by_tier.items()}

    def weight(path: str) -> float:
        return known.get(path, fallback.get(tier(path), 1.0))

    totals = [0.0] * shards
    placed: dict[str, int] = {}
    for path in sorted(files, key=lambda p: (-weight(p), p)):
        target = min(range(shards), key=lambda i: (totals[i], i))
        placed[path] = target
        totals[target] += weight(path)
    return placed


def load_durations() -> dict[str, float]:
    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    option = config.getoption("--shard")
    if not option:
        return
    k, n = parse_shard(option)
    placed = assign(sorted({_file(i) for i in items}), load_durations(), n)
    keep = [i for i in items if placed[_file(i)] == k - 1]
    dropped = [i for i in items if placed[_file(i)] != k - 1]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


class DurationRecorder:
    """Sums setup, call and teardown seconds per file; written at the end of a run that passed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid.split("::", 1)[0]] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus != 0 or not self.seconds:
            return
        merged = load_durations() | {path: round(s, 1) for path, s in self.seconds.items()}
        DURATIONS.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--store-durations"):
        config.pluginmanager.register(DurationRecorder(), "shard-durations")
