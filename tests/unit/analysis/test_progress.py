"""An Inconclusive metric says how far a Pass is: requests and time, if the canary keeps behaving as so far."""

from __future__ import annotations

import re

import pytest

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.progress import requests_to_pass
from modelrollout.analysis.types import Tick, Verdict, VersionCounts
from tests.unit.analysis.replay import run

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("estimate", "upper", "limit", "samples", "per_sample", "expected"),
    [
        (0.0, 0.01, 0.005, 1000.0, 1.0, 3000.0),  # the distance to the upper end must halve: 4x the samples
        (0.0, 0.01, 0.005, 1000.0, 2.0, 6000.0),  # half the requests are labelled: twice the requests
        (0.002, 0.004, 0.005, 1000.0, 1.0, 0.0),  # already below the limit
        (0.005, 0.01, 0.005, 1000.0, 1.0, None),  # estimate at the limit: no amount of data will do
        (0.0, 0.01, 0.005, 0.0, 1.0, None),  # no samples yet: nothing to project from
    ],
)
def test_requests_to_pass(
    estimate: float, upper: float, limit: float, samples: float, per_sample: float, expected: float | None
) -> None:
    assert requests_to_pass(estimate, upper, limit, samples, per_sample) == expected


def config(margin: float) -> AnalysisConfig:
    metric = {"name": "errors", "type": "errorRate", "margin": margin}
    return AnalysisConfig.from_spec({"minSamples": 100, "minExposure": "30s", "metrics": [metric]})


def test_an_inconclusive_equal_canary_is_told_requests_and_time_to_a_pass() -> None:
    tick = Tick(VersionCounts(requests=300, errors=3), VersionCounts(requests=900, errors=9), 0.25)  # 20/s canary
    outcome, _ = run(config(0.005), [tick] * 8)
    result = outcome.results[0]
    assert result.verdict is Verdict.INCONCLUSIVE and result.interval is not None
    assert "tolerated +0.5 pts: keep collecting; a Pass needs about" in result.message
    match = re.search(r"about ([\d,]+) more canary requests \(about (\w+) at 20/s\)", result.message)
    assert match is not None, result.message
    more = float(match.group(1).replace(",", ""))
    # Upper end 'upper' above an estimate of 0: (upper / margin)^2 x 2,400 samples in all, to 2 digits.
    expected = 2400 * ((result.interval[1] / 0.005) ** 2 - 1)
    assert more == pytest.approx(expected, rel=0.05)


def test_a_canary_whose_estimate_is_above_the_margin_is_told_no_pass_is_expected() -> None:
    tick = Tick(VersionCounts(requests=300, errors=6), VersionCounts(requests=900, errors=9), 0.25)  # +1 pt
    outcome, _ = run(config(0.005), [tick] * 3)
    assert outcome.results[0].verdict is Verdict.INCONCLUSIVE
    assert "no Pass expected while the estimate stays at or above the tolerated limit" in outcome.results[0].message


def test_an_idle_canary_is_told_how_many_ticks_saw_no_requests_not_n_a() -> None:
    idle = Tick(VersionCounts(), VersionCounts(), 0.25)
    outcome, _ = run(config(0.005), [idle] * 4)
    result = outcome.results[0]
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.message == "0 canary requests in the last 4 ticks (minSamples 100): keep collecting"
