"""make test's shards: every file runs in exactly one shard, the split is balanced by measured time, and
the runner fails when any shard fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sharding import assign, parse_shard

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_every_file_lands_in_exactly_one_shard_longest_first() -> None:
    known = {"tests/e2e/test_a.py": 300.0, "tests/e2e/test_b.py": 200.0, "tests/e2e/test_c.py": 120.0,
             "tests/e2e/test_d.py": 90.0}
    placed = assign(sorted(known), known, 2)
    assert placed == {"tests/e2e/test_a.py": 0, "tests/e2e/test_b.py": 1, "tests/e2e/test_c.py": 1,
                      "tests/e2e/test_d.py": 0}


def test_an_unmeasured_file_weighs_the_mean_of_its_tier() -> None:
    known = {"tests/e2e/test_a.py": 100.0, "tests/e2e/test_b.py": 300.0, "tests/unit/test_u.py": 1.0}
    # test_new (an e2e file, 200 s by the mean) goes beside test_a, not onto test_b's shard.
    placed = assign([*known, "tests/e2e/test_new.py"], known, 2)
    assert placed["tests/e2e/test_new.py"] == placed["tests/e2e/test_a.py"] != placed["tests/e2e/test_b.py"]


def test_the_split_does_not_depend_on_the_order_files_are_given() -> None:
    files = [f"tests/e2e/test_{i}.py" for i in range(9)]
    known = {f: float(i % 4) for i, f in enumerate(files)}
    assert assign(files, known, 3) == assign(list(reversed(files)), known, 3)


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b"])
def test_a_bad_shard_option_is_refused(text: str) -> None:
    with pytest.raises(pytest.UsageError):
        parse_shard(text)


def _suite(tmp_path: Path, second: str) -> Path:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.sharding"]\n')
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    (tmp_path / "test_two.py").write_text(f"def test_two():\n    assert {second}\n")
    return tmp_path


def _run_shards(suite: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "hack/run-shards"), "2", "-q", "-p", "no:cacheprovider",
                           str(suite)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_runner_fails_when_one_shard_fails(tmp_path: Path) -> None:
    done = _run_shards(_suite(tmp_path, "False"))
    assert done.returncode == 1, done.stdout + done.stderr
    summaries = [line for line in done.stdout.splitlines() if line.startswith("shard ")]
    assert len(summaries) == 2 and any("1 failed" in line for line in summaries), done.stdout


def test_the_runner_passes_when_every_shard_passes(tmp_path: Path) -> None:
    done = _run_shards(_suite(tmp_path, "True"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sum("1 passed" in line for line in done.stdout.splitlines() if line.startswith("shard ")) == 2
