"""Checks of the holdout dataset itself, run before any model is judged on it; each failure names the
column (or the label column) at fault.

`select_features` picks the model's columns: the declared `features` by name in that order, else every
column but the label. Its result feeds all checks, so a missing declared column is a failure, not a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelserver.validation.config import FeatureRule, ValidationConfig
from modelserver.validation.holdout import MISSING, Holdout
from modelserver.validation.report import FAIL, PASS, Check


def select_features(holdout: Holdout, config: ValidationConfig) -> tuple[list[Check], list[int]]:
    """Indexes of the model's feature columns in the holdout, and a failed check per declared column absent."""
    if not config.features:
        return [], list(range(len(holdout.columns)))
    missing = [f.name for f in config.features if f.name not in holdout.columns]
    checks = [Check("features", name, FAIL, f"declared feature column {name} is not in the holdout "
                    f"(columns: {', '.join(holdout.columns)})") for name in missing]
    return checks, [holdout.columns.index(f.name) for f in config.features if f.name in holdout.columns]


def data_checks(holdout: Holdout, config: ValidationConfig, n_features: int, classes: Sequence[str]) -> list[Check]:
    checks, picked = select_features(holdout, config)
    if checks:
        return checks
    rules = {f.name: f for f in config.features}
    checks.append(_feature_count(len(picked), n_features))
    columns = [holdout.columns[i] for i in picked]
    checks += _per_column("dtype", columns, [_dtype_problem(holdout, i, rules.get(holdout.columns[i]))
                                             for i in picked])
    if not config.allow_missing:
        checks += _per_column("missingValues", columns, [_missing_problem(holdout, i) for i in picked])
        checks += [_missing_labels(holdout)]
    ranged = [i for i in picked if holdout.columns[i] in rules]
    if ranged:
        checks += _per_column("ranges", [holdout.columns[i] for i in ranged],
                              [_range_problem(holdout, i, rules[holdout.columns[i]]) for i in ranged])
    checks.append(_duplicates(holdout, picked, config.max_duplicate_fraction))
    checks.append(_labels(holdout, classes))
    return checks


def _feature_count(found: int, expected: int) -> Check:
    verdict = PASS if found == expected else FAIL
    return Check("featureCount", "features", verdict, f"{found} feature columns, the model takes {expected}",
                 candidate=float(found), threshold=float(expected))


def _per_column(name: str, columns: list[str], problems: list[str | None]) -> list[Check]:
    """One failed check per column with a problem, or one passed check for all of them."""
    failed = [Check(name, col, FAIL, f"column {col}: {p}") for col, p in zip(columns, problems, strict=True) if p]
    return failed or [Check(name, "all columns", PASS, f"{len(columns)} columns checked")]


def _dtype_problem(holdout: Holdout, i: int, rule: FeatureRule | None) -> str | None:
    if holdout.non_numeric[i]:
        return f"{holdout.non_numeric[i]} values are not numbers"
    if rule is not None and rule.dtype == "int":
        column = holdout.x[:, i]
        present = column[~np.isnan(column)]
        fractional = int(np.count_nonzero(present != np.round(present)))
        if fractional:
            return f"{fractional} values are not integers (declared dtype int)"
    return None


def _missing_problem(holdout: Holdout, i: int) -> str | None:
    missing = int(np.count_nonzero(np.isnan(holdout.x[:, i]))) - holdout.non_numeric[i]
    return f"{missing} of {len(holdout.x)} values are missing" if missing else None


def _missing_labels(holdout: Holdout) -> Check:
    if holdout.missing_labels:
        return Check("missingValues", holdout.label_column, FAIL,
                     f"label column {holdout.label_column}: {holdout.missing_labels} labels are missing")
    return Check("missingValues", holdout.label_column, PASS, "every row has a label")


def _range_problem(holdout: Holdout, i: int, rule: FeatureRule) -> str | None:
    column = holdout.x[:, i]
    present = column[~np.isnan(column)]
    low = np.count_nonzero(present < rule.min) if rule.min is not None else 0
    high = np.count_nonzero(present > rule.max) if rule.max is not None else 0
    if not low and not high:
        return None
    bounds = f"[{'-inf' if rule.min is None else f'{rule.min:g}'}, {'inf' if rule.max is None else f'{rule.max:g}'}]"
    return (f"{low + high} values outside {bounds} (observed {present.min():g} to {present.max():g})")


def _duplicates(holdout: Holdout, picked: list[int], limit: float) -> Check:
    rows = [(*(holdout.x[r, i] for i in picked), holdout.y[r]) for r in range(len(holdout.x))]
    repeated = len(rows) - len(set(map(_row_key, rows)))
    share = repeated / len(rows)
    verdict = PASS if share <= limit else FAIL
    return Check("maxDuplicateFraction", "rows", verdict,
                 f"{repeated} of {len(rows)} rows repeat an earlier row", candidate=share, threshold=limit)


def _row_key(row: tuple[object, ...]) -> tuple[str, ...]:
    return tuple(repr(v) for v in row)  # NaN != NaN, but two missing cells are the same cell


def _labels(holdout: Holdout, classes: Sequence[str]) -> Check:
    known = set(classes)
    unknown = sorted({str(v) for v in holdout.y if str(v) not in known and str(v).lower() not in MISSING})
    if unknown:
        return Check("labels", holdout.label_column, FAIL,
                     f"label column {holdout.label_column}: values {', '.join(unknown[:5])} are not among the "
                     f"model's classes {', '.join(classes)}")
    return Check("labels", holdout.label_column, PASS, f"all labels are among the model's classes {', '.join(classes)}")
