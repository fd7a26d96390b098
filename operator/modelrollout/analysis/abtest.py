"""A/B experiments: which of two versions has the better outcome, declared sequentially.

Each arm reports cumulative totals of a per-request outcome: how many requests had one (n), their sum and
the sum of their squares. A binary outcome (a conversion, a correct prediction) is 0/1, so its sum is its
count; a numeric one (revenue, a rating) is any real number. Only those three totals are needed, so the
server's counters carry the whole experiment, whichever pod answered.

The difference of means d = mean(B) - mean(A) is estimated with an asymptotic confidence sequence
(Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas, "Time-uniform central limit theory and asymptotic
confidence sequences", Ann. Statist. 2024): each request contributes psi = (Y - c) / pi for arm B and
-(Y - c) / (1 - pi) for arm A, whose mean is d, and the normal-mixture boundary of sequential.py bounds the
running sum of psi at every look at once. pi is the realised share of B, so sum(psi) / n is exactly the
difference of the arms' means; c, the pooled mean, is a control variate: it leaves the estimate as it
is and takes the outcome's level out of psi's variance. A winner is declared when the interval leaves
[-minEffect, +minEffect] on one side, so looking after every tick does not inflate the error: with no
difference, a winner is declared in at most about alpha of experiments however long they run (make
bench-decisions, part 4).

A sample-ratio check (a two-sided e-process on the share of B against the share the experiment asked
for) flags a split that is not what was configured: an arm failing or timing out requests, or clients
sticking to one arm, make the comparison of outcomes meaningless, whatever the interval says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from modelrollout.analysis.sequential import FloatArray, mixture_rho, radius_for_rho, two_sided_log_e_value
from modelrollout.analysis.types import ArmTotals


@dataclass(frozen=True)
class ABConfig:
    alpha: float = 0.05
    min_effect: float = 0.0  # a winner must beat the other by more than this (outcome units)
    min_samples: int = 200  # per arm, before any winner (the interval is asymptotic)
    planned_samples: int = 20_000  # both arms: where the interval is tightest (fixed before the data)
    split: float = 0.5  # the share of requests the experiment gives to B
    srm_alpha: float = 0.001  # the sample-ratio check's error rate (a broken split is rare and costly)
    binary: bool = True  # 0/1 outcomes: the effect size is the difference in proportions


class Winner(StrEnum):
    A = "A"
    B = "B"
    NONE = "none"  # not (yet) a significant difference


@dataclass(frozen=True)
class ABResult:
    winner: Winner
    estimate: float  # mean(B) - mean(A)
    interval: tuple[float, float]  # always valid at level 1 - alpha
    effect_size: float  # the difference in proportions (binary) or Cohen's d (numeric)
    a: ArmTotals
    b: ArmTotals
    share_b: float  # realised
    srm_log_e: float  # the sample-ratio check's evidence; >= log(1/srm_alpha): the split is broken
    srm_broken: bool

    def describe(self, config: ABConfig, final: bool = False) -> str:
        """The numbers behind the verdict, for a status message or an Event; final: the experiment ended."""
        lo, hi = self.interval
        size = "difference in proportions" if config.binary else "Cohen's d"
        ratio = (f"; sample ratio {self.share_b:.3f} vs {config.split:.3f} asked: the split is broken, "
                 "the comparison is not trusted" if self.srm_broken else f"; B's share {self.share_b:.3f}")
        undecided = "no significant difference" + ("" if final else " yet")
        head = {Winner.B: "B wins", Winner.A: "A wins", Winner.NONE: undecided}[self.winner]
        return (f"{head}: B - A = {self.estimate:+.4g} ({(1 - config.alpha):.0%} always-valid interval "
                f"[{lo:+.4g}, {hi:+.4g}]), {size} {self.effect_size:+.3g}; A {self.a.mean:.4g} over "
                f"{self.a.n:.0f}, B {self.b.mean:.4g} over {self.b.n:.0f}{ratio}")


def difference_interval(a: ArmTotals, b: ArmTotals, config: ABConfig) -> tuple[float, tuple[float, float]]:
    """(mean(B) - mean(A), its always-valid interval); (nan, (-inf, inf)) while an arm is empty."""
    estimate, radius = interval_arrays(a.n, a.total, a.squares, b.n, b.total, b.squares, config)
    e, r = float(estimate), float(radius)
    return (e, (-math.inf, math.inf)) if math.isnan(e) else (e, (e - r, e + r))


def interval_arrays(
    a_n: npt.ArrayLike, a_total: npt.ArrayLike, a_squares: npt.ArrayLike,
    b_n: npt.ArrayLike, b_total: npt.ArrayLike, b_squares: npt.ArrayLike, config: ABConfig,
) -> tuple[FloatArray, FloatArray]:
    """(estimate, radius) for arrays of totals, one experiment per element (the benchmark runs thousands)."""
    an, bn = np.asarray(a_n, dtype=np.float64), np.asarray(b_n, dtype=np.float64)
    n = an + bn
    at, bt = np.asarray(a_total, dtype=np.float64), np.asarray(b_total, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = bn / n
        # Outcomes centred on the pooled mean c: (Y - c) / pi for B, -(Y - c) / (1 - pi) for A. With the
        # realised share the sum is the same n * d for any c, but uncentred the terms carry the outcome's
        # level: at 90% accuracy their variance was ten times the outcome's own, and the interval three
        # times wider than it needed to be (make bench-decisions part 4, "accuracy 0/1").
        c = (at + bt) / n
        a_centred = np.asarray(a_squares) - 2.0 * c * at + c * c * an
        b_centred = np.asarray(b_squares) - 2.0 * c * bt + c * c * bn
        psi_sum = (bt - c * bn) / share - (at - c * an) / (1.0 - share)
        psi_squares = b_centred / share**2 + a_centred / (1.0 - share) ** 2
        variance = np.maximum(psi_squares - psi_sum * psi_sum / n, 0.0)
        # Tightest at planned_samples requests of this per-request variance: the CLT scale, fixed in advance.
        # (rho is proportional to the optimal variance: the rho of 1 scaled per experiment.)
        optimal = np.maximum(variance / n, 1e-12) * config.planned_samples
        rho = optimal * mixture_rho(config.alpha, one_sided=False, optimal_variance=1.0)
        radius = radius_for_rho(variance, config.alpha, rho) / n
        estimate = psi_sum / n
    empty = (an < 1) | (bn < 1)
    return (np.asarray(np.where(empty, np.nan, estimate), dtype=np.float64),
            np.asarray(np.where(empty, np.inf, radius), dtype=np.float64))


def sample_ratio_log_e(a: ArmTotals, b: ArmTotals, split: float) -> float:
    """Evidence that B's share of requests is not `split` (a normal mixture on the binomial count)."""
    n = a.n + b.n
    if n < 1 or not 0.0 < split < 1.0:
        return 0.0
    variance = n * split * (1.0 - split)
    rho = mixture_rho(0.001, one_sided=False, optimal_variance=max(variance, 1.0))
    return float(two_sided_log_e_value(b.n - n * split, variance, rho))


def assess(a: ArmTotals, b: ArmTotals, config: ABConfig) -> ABResult:
    estimate, (lo, hi) = difference_interval(a, b, config)
    srm = sample_ratio_log_e(a, b, config.split)
    broken = srm >= math.log(1.0 / config.srm_alpha)
    enough = min(a.n, b.n) >= config.min_samples
    winner = Winner.NONE
    if enough and not broken:
        if lo > config.min_effect:
            winner = Winner.B
        elif hi < -config.min_effect:
            winner = Winner.A
    n = a.n + b.n
    return ABResult(winner, estimate, (lo, hi), _effect_size(a, b, estimate, config.binary), a, b,
                    b.n / n if n else math.nan, srm, broken)


def _effect_size(a: ArmTotals, b: ArmTotals, estimate: float, binary: bool) -> float:
    if binary or math.isnan(estimate):
        return estimate
    pooled_n = a.n + b.n - 2
    if pooled_n <= 0:
        return math.nan
    pooled = ((a.n - 1) * a.variance + (b.n - 1) * b.variance) / pooled_n
    return estimate / math.sqrt(pooled) if pooled > 0 else math.nan
