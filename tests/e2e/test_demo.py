"""`make demo` is the main job: run it as a test (its own nested cluster) and check both outcomes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_demo_promotes_the_good_model_and_rolls_back_the_bad_one() -> None:
    done = subprocess.run([str(ROOT / "hack" / "in-netns"), sys.executable, "-m", "localcluster.demo", "--plain"],
                          capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "version 2 (good): PROMOTED" in out and "version 3 (bad):  ROLLED BACK" in out, out[-4000:]
    assert "accuracy" in out.split("=== summary ===")[1]
