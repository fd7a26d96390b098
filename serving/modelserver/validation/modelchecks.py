"""The candidate judged on the holdout: its scores against absolute minimums (`minAccuracy`, `minF1`, ...),
against the stable model's on the same rows (`maxRegression`, in points: 2 means at most 0.02 lower), and
the distribution of its predicted classes against the stable model's (`maxPredictionShift`)."""

from __future__ import annotations

from modelserver.validation.config import MIN_KEYS, ValidationConfig
from modelserver.validation.report import FAIL, PASS, Check
from modelserver.validation.scores import Scores

# A score equal to its threshold passes; float sums differ in the last bits from the same score.
EPSILON = 1e-12


def model_checks(config: ValidationConfig, candidate: Scores, stable: Scores, shift: float) -> list[Check]:
    checks = [*_minimums(config, candidate, stable), *_regressions(config, candidate, stable)]
    if config.max_prediction_shift is not None:
        limit = config.max_prediction_shift
        checks.append(Check("maxPredictionShift", "predicted classes", PASS if shift <= limit + EPSILON else FAIL,
                            f"total variation distance {shift:.4f} between the candidate's and the stable "
                            f"model's predicted classes (limit {limit:g})",
                            candidate=shift, threshold=limit))
    return checks


def _subjects(config: ValidationConfig, score: str, scores: Scores) -> list[tuple[str, float]]:
    """(subject, value) pairs a score is checked on: the overall value, and each class when asked."""
    if score == "accuracy":
        return [("overall", scores.accuracy)]
    pairs = [("macro", scores.macro[score])]
    if config.per_class:
        pairs += [(f"class {c}", v[score]) for c, v in scores.per_class.items()]
    return pairs


def _minimums(config: ValidationConfig, candidate: Scores, stable: Scores) -> list[Check]:
    checks = []
    for score, minimum in config.min_scores.items():
        theirs = dict(_subjects(config, score, stable))
        for subject, value in _subjects(config, score, candidate):
            verdict = PASS if value + EPSILON >= minimum else FAIL
            checks.append(Check(MIN_KEYS[score], subject, verdict,
                                f"candidate {score} ({subject}) {value:.4f}, minimum {minimum:g}",
                                candidate=value, stable=theirs.get(subject), threshold=minimum))
    return checks


def _regressions(config: ValidationConfig, candidate: Scores, stable: Scores) -> list[Check]:
    checks = []
    for score, points in config.max_regression.items():
        theirs = dict(_subjects(config, score, stable))
        for subject, value in _subjects(config, score, candidate):
            floor = theirs[subject] - points / 100.0
            verdict = PASS if value + EPSILON >= floor else FAIL
            drop = (theirs[subject] - value) * 100.0
            checks.append(Check(f"maxRegression.{score}", subject, verdict,
                                f"candidate {score} ({subject}) {value:.4f} vs stable {theirs[subject]:.4f}: "
                                f"{drop:+.2f} points lower, at most {points:g} allowed",
                                candidate=value, stable=theirs[subject], threshold=floor))
    return checks

