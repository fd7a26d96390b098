"""Shadow rollouts judged on the same requests: agreement with stable, and the paired accuracy difference.

In a shadow stage the candidate answers a copy of each mirrored request, so both versions predicted the same
rows. The inputs are cumulative counts (never a tick history): predictions compared (agree / disagree) and
labelled pairs split by who was right (both, only stable, only the candidate, neither). Two checks, each valid
under repeated looks (Ville's inequality: an e-process reaches 1/alpha with probability at most alpha, however
often it is looked at):

* **Agreement** with an always-valid interval for the agreement rate (`inversion.binomial_rate_interval`, the
  bound test of counts.py asked for every rate). Pass when the interval lies above `minAgreement`, Fail below.
* **Paired accuracy difference** delta = candidate accuracy - stable accuracy on the labelled pairs. Per pair
  X = +1 (only the candidate right), -1 (only stable right), 0 (concordant), so delta = E X and only the
  discordant pairs move the estimate (McNemar's observation). "delta >= m" is tested by the betting
  martingale prod (1 + lam (m - X)) (Waudby-Smith & Ramdas, "Estimating means of bounded random variables by
  betting", JRSS B 2024): its factors have mean 1 + lam (m - delta) <= 1 under the null, whatever the
  discordance rate is and however it moves, and with lam fixed the product depends only on the counts:
  (1 + lam (m + 1))^b (1 + lam (m - 1))^c (1 + lam m)^concordant. At m = 0 it is exactly the likelihood ratio
  of McNemar's test, b ~ Binomial(b + c, (1 + lam) / 2) against a fair split; a non-zero m lets the
  concordant pairs count too, as a margin in accuracy points must. Mixed over a fixed grid of lam, asked for
  every m in both directions, it gives the interval; Fail and Pass are that interval against one boundary
  (-margin, or +minImprovement), so the verdict and its interval cannot disagree.

Both intervals are intersected with the earlier looks' (an always-valid interval stays valid when intersected
over time), which makes Pass and Fail persist. Each check gets an equal share of `alpha`; each end of its
interval misses with probability at most that share.

>>> config = PairedConfig.from_spec({"minAgreement": 0.9, "margin": 0.01})
>>> counts = PairedCounts(agree=9_400, disagree=600, both_right=2_740, stable_only=120, candidate_only=40,
...                       both_wrong=100)
>>> outcome, state = assess_paired(config, PairedState(), counts)
>>> outcome.overall.value, outcome.difference.verdict.value
('Fail', 'Fail')
>>> print(outcome.difference.message.replace(", discordant", ",\\ndiscordant").replace(", 97", ",\\n97"))
paired accuracy on 3,000 labelled pairs: candidate 92.7% vs stable 95.3%,
discordant 120 stable-only vs 40 candidate-only, paired difference -2.7 pts,
97.5% always-valid interval [-4.0, -1.4], tolerated -1.0 pts: rollback
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from modelrollout.analysis.counts import running_end
from modelrollout.analysis.inversion import binomial_rate_interval
from modelrollout.analysis.pairedconfig import PairedConfig
from modelrollout.analysis.sequential import running_p_value
from modelrollout.analysis.types import VERDICT_WORDS, MetricResult, Verdict

# Bets of the paired test and their prior weights, fixed in advance. The best bet against a drift d with
# discordance rate D is about d / D: 0.4 for the benchmark's 2 points on 5% discordance, 0.2 for a 1 point margin,
# 0.05-0.1 when a fifth of the rows are discordant. At most 0.45 keeps every factor positive (1 + lam (m - X) >=
# 1 - 2 lam) for any m in [-1, 1], so each e-value is monotone in m and the interval is one piece.
BETS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.45)
BET_WEIGHTS: tuple[float, ...] = (0.1, 0.2, 0.25, 0.25, 0.2)
AGREEMENT, DIFFERENCE = "agreement", "paired-accuracy"


@dataclass(frozen=True)
class PairedCounts:
    """Cumulative counts of one shadow stage, summed over the candidate's pods.

    agree / disagree: mirrored predictions where the candidate's class was / was not stable's. The labelled pairs
    are a subset of those predictions: both right, only stable right (b), only the candidate right (c), both
    wrong.
    """

    agree: float = 0.0
    disagree: float = 0.0
    both_right: float = 0.0
    stable_only: float = 0.0
    candidate_only: float = 0.0
    both_wrong: float = 0.0

    @property
    def compared(self) -> float:
        return self.agree + self.disagree

    @property
    def labelled(self) -> float:
        return self.both_right + self.stable_only + self.candidate_only + self.both_wrong

    @property
    def concordant(self) -> float:
        return self.both_right + self.both_wrong


# --- the paired test -------------------------------------------------------------------------------------------


def log_e_value_below(
    stable_only: npt.ArrayLike, candidate_only: npt.ArrayLike, concordant: npt.ArrayLike, m: float
) -> npt.NDArray[np.float64]:
    """Log e-value against "delta >= m": large when the candidate is less accurate than stable by more than -m.

    Works on arrays (the benchmark's rollouts). At m = 0 only the discordant pairs count (McNemar):

    >>> round(float(log_e_value_below(30, 10, 1_000, 0.0)), 2), round(float(log_e_value_below(30, 10, 0, 0.0)), 2)
    (4.12, 4.12)
    """
    b, c, n0 = (np.asarray(x, dtype=np.float64)[..., None] for x in (stable_only, candidate_only, concordant))
    bets = np.asarray(BETS)
    terms = b * np.log1p(bets * (m + 1.0)) + c * np.log1p(bets * (m - 1.0)) + n0 * np.log1p(bets * m)
    return np.asarray(np.logaddexp.reduce(terms + np.log(np.asarray(BET_WEIGHTS)), axis=-1))


def log_e_value_above(
    stable_only: npt.ArrayLike, candidate_only: npt.ArrayLike, concordant: npt.ArrayLike, m: float
) -> npt.NDArray[np.float64]:
    """Log e-value against "delta <= m": the same test with the versions' roles swapped (X -> -X, m -> -m)."""
    return log_e_value_below(candidate_only, stable_only, concordant, -m)


def difference_interval(counts: PairedCounts, alpha: float) -> tuple[float, float]:
    """(lower, upper) paired differences not rejected, each end at alpha; (-1, 1) without labelled pairs.

    >>> [round(x, 4) for x in difference_interval(PairedCounts(both_right=900, stable_only=40, candidate_only=10,
    ...                                                          both_wrong=50), 0.05)]
    [-0.0506, -0.0117]
    """
    threshold = math.log(1.0 / alpha)
    b, c, n0 = counts.stable_only, counts.candidate_only, counts.concordant

    def above(m: float) -> float:  # falls as m rises: "delta <= m" is rejected for every m below the lower end
        return float(log_e_value_above(b, c, n0, m)) - threshold

    def below(m: float) -> float:  # rises with m
        return float(log_e_value_below(b, c, n0, m)) - threshold

    lower = -1.0 if above(-1.0) < 0 else (1.0 if above(1.0) >= 0 else float(brentq(above, -1.0, 1.0, xtol=1e-7)))
    upper = 1.0 if below(1.0) < 0 else (-1.0 if below(-1.0) >= 0 else float(brentq(below, -1.0, 1.0, xtol=1e-7)))
    return lower, upper


# --- running ends and the look ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningInterval:
    """One check's interval intersected over all looks so far (None: unbounded) and its running p-value."""

    lower: float | None = None
    upper: float | None = None
    p_value: float = 1.0

    def tightened(self, interval: tuple[float, float], log_e_fail: float | None) -> RunningInterval:
        p_value = self.p_value if log_e_fail is None else running_p_value(self.p_value, log_e_fail)
        return RunningInterval(
            running_end(self.lower, interval[0], max), running_end(self.upper, interval[1], min), p_value
        )

    def ends(self, natural: tuple[float, float]) -> tuple[float, float]:
        return (natural[0] if self.lower is None else self.lower, natural[1] if self.upper is None else self.upper)


@dataclass(frozen=True)
class PairedState:
    """What a shadow stage keeps between looks (in status): both checks' running intervals, as plain JSON.

    >>> state = PairedState(difference=RunningInterval(-0.03, -0.01, 0.02))
    >>> PairedState.from_dict(state.to_dict()) == state
    True
    """

    agreement: RunningInterval = RunningInterval()
    difference: RunningInterval = RunningInterval()

    def to_dict(self) -> dict[str, dict[str, float | None]]:
        return {f.name: {g.name: getattr(getattr(self, f.name), g.name) for g in fields(RunningInterval)}
                for f in fields(self)}

    @staticmethod
    def from_dict(raw: Mapping[str, Any] | None) -> PairedState:
        raw = raw or {}
        return PairedState(**{key: RunningInterval(**raw[key]) for key in ("agreement", "difference") if key in raw})


@dataclass(frozen=True)
class PairedResult:
    """One check's verdict and the numbers behind it (samples: mirrored predictions, or labelled pairs)."""

    name: str
    verdict: Verdict
    message: str
    estimate: float | None
    interval: tuple[float, float] | None
    limit: float | None
    samples: float
    p_value: float | None = None
    stable_only: float = 0.0
    candidate_only: float = 0.0
    candidate_value: float | None = None
    stable_value: float | None = None

    def as_metric_result(self) -> MetricResult:
        """The shape status already shows per metric (the discordant counts are in the message)."""
        return MetricResult(
            name=self.name, verdict=self.verdict, message=self.message, canary_value=self.candidate_value,
            stable_value=self.stable_value, estimate=self.estimate, interval=self.interval, p_value=self.p_value,
            canary_samples=self.samples, stable_samples=self.samples if self.name == DIFFERENCE else 0.0,
        )


@dataclass(frozen=True)
class PairedOutcome:
    """Both checks after one look; overall is Fail if a judged check failed, Pass only if all judged passed."""

    agreement: PairedResult
    difference: PairedResult
    overall: Verdict

    @property
    def message(self) -> str:
        return "; ".join(r.message for r in (self.agreement, self.difference))


def assess_paired(
    config: PairedConfig, state: PairedState, counts: PairedCounts | None, reason: str = ""
) -> tuple[PairedOutcome, PairedState]:
    """One look at a shadow stage's cumulative counts. Missing or inconsistent counts leave the state alone and
    are Inconclusive, never Pass."""
    problem = "no shadow data" + (f" ({reason})" if reason else "") if counts is None else _inconsistency(counts)
    if problem is not None:
        message = f"{problem}: keep collecting"
        return PairedOutcome(_missing(AGREEMENT, message), _missing(DIFFERENCE, message), Verdict.INCONCLUSIVE), state
    assert counts is not None
    alpha = config.alpha_share
    new_state = _fold(config, state, counts, alpha)
    gate = None
    if counts.compared < config.min_samples:
        gate = f"{counts.compared:,.0f} of {config.min_samples:,} mirrored predictions so far"
    agreement = _agreement_result(config, new_state.agreement, counts, alpha, gate)
    difference = _difference_result(config, new_state.difference, counts, alpha, gate)
    judged = [r.verdict for r, limit in ((agreement, config.min_agreement), (difference, config.boundary))
              if limit is not None]
    return PairedOutcome(agreement, difference, _overall(judged)), new_state


def _inconsistency(counts: PairedCounts) -> str | None:
    """Counts that cannot come from one shadow run (a pair is a compared prediction; only disagreements can be
    discordant) point at a broken scrape: judged, they could fake evidence either way."""
    values = [getattr(counts, f.name) for f in fields(counts)]
    if any(not math.isfinite(v) or v < 0 for v in values):
        return "shadow counts negative or not finite"
    if counts.labelled > counts.compared or counts.stable_only + counts.candidate_only > counts.disagree:
        return (
            f"inconsistent shadow counts: {counts.labelled:,.0f} labelled pairs of {counts.compared:,.0f} compared "
            f"predictions, {counts.stable_only + counts.candidate_only:,.0f} discordant of "
            f"{counts.disagree:,.0f} disagreements"
        )
    return None


def _fold(config: PairedConfig, state: PairedState, counts: PairedCounts, alpha: float) -> PairedState:
    agreement = state.agreement
    if counts.compared > 0:
        agreement = agreement.tightened(binomial_rate_interval(counts.agree, counts.compared, alpha), None)
    difference = state.difference
    if counts.labelled > 0:
        boundary = config.boundary
        log_e = None
        if boundary is not None:
            log_e = float(log_e_value_below(counts.stable_only, counts.candidate_only, counts.concordant, boundary))
        difference = difference.tightened(difference_interval(counts, alpha), log_e)
    return PairedState(agreement, difference)


def _verdict(interval: tuple[float, float], limit: float) -> Verdict:
    """Pass when the interval lies above the limit, Fail when below; Pass first should intervals ever cross."""
    if interval[0] > limit:
        return Verdict.PASS
    if interval[1] < limit:
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE


def _overall(verdicts: list[Verdict]) -> Verdict:
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if verdicts and all(v is Verdict.PASS for v in verdicts):
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def _missing(name: str, message: str) -> PairedResult:
    return PairedResult(name, Verdict.INCONCLUSIVE, message, None, None, None, 0.0)


def _ending(verdict: Verdict, gate: str | None) -> str:
    if gate is not None and verdict is not Verdict.INCONCLUSIVE:
        return f"keep collecting ({gate})"
    return VERDICT_WORDS[verdict]


def _agreement_result(
    config: PairedConfig, running: RunningInterval, counts: PairedCounts, alpha: float, gate: str | None
) -> PairedResult:
    if counts.compared <= 0:
        return _missing(AGREEMENT, "agreement: 0 mirrored predictions compared so far: keep collecting")
    rate = counts.agree / counts.compared
    interval = running.ends((0.0, 1.0))
    limit = config.min_agreement
    verdict = Verdict.INCONCLUSIVE if limit is None else _verdict(interval, limit)
    criterion = "not judged (no minAgreement)" if limit is None else f"minimum {limit:.1%}"
    message = (
        f"agreement {rate:.1%} [{interval[0]:.1%}, {interval[1]:.1%}] of {counts.compared:,.0f} mirrored predictions "
        f"({1 - alpha:.1%} always-valid interval), {criterion}"
    )
    if limit is not None:
        message = f"{message}: {_ending(verdict, gate)}"
        verdict = Verdict.INCONCLUSIVE if gate is not None else verdict
    return PairedResult(AGREEMENT, verdict, message, rate, interval, limit, counts.compared, candidate_value=rate)


def _difference_result(
    config: PairedConfig, running: RunningInterval, counts: PairedCounts, alpha: float, gate: str | None
) -> PairedResult:
    b, c, pairs = counts.stable_only, counts.candidate_only, counts.labelled
    if pairs <= 0:
        message = "paired accuracy: 0 labelled pairs so far (labels for mirrored predictions): keep collecting"
        return replace(_missing(DIFFERENCE, message), limit=config.boundary)
    estimate = (c - b) / pairs
    interval = running.ends((-1.0, 1.0))
    limit = config.boundary
    candidate, stable = (counts.both_right + c) / pairs, (counts.both_right + b) / pairs
    message = (
        f"paired accuracy on {pairs:,.0f} labelled pairs: candidate {candidate:.1%} vs stable {stable:.1%}, "
        f"discordant {b:,.0f} stable-only vs {c:,.0f} candidate-only, paired difference {_points(estimate)} pts, "
        f"{1 - alpha:.1%} always-valid interval [{_points(interval[0])}, {_points(interval[1])}], "
    )
    if limit is None:
        verdict, message = Verdict.INCONCLUSIVE, f"{message}not judged (no margin or minImprovement)"
    else:
        verdict = _verdict(interval, limit)
        word = "required" if config.min_improvement is not None else "tolerated"
        message = f"{message}{word} {_points(limit)} pts: {_ending(verdict, gate)}"
        verdict = Verdict.INCONCLUSIVE if gate is not None else verdict
    return PairedResult(
        DIFFERENCE, verdict, message, estimate, interval, limit, pairs, running.p_value, b, c, candidate, stable
    )


def _points(value: float) -> str:
    """A difference in percentage points with its sign: -0.019 -> '-1.9'."""
    return f"{value * 100:+.1f}"
