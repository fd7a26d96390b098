"""Drift watch statistics: the reference file's bins as the server will count them, PSI and the chi-square
test pinned against scipy, a stable input rarely flagged across many windows and features, a one-standard-
deviation shift of one feature flagged naming that feature only, and missing data never read as no drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from modelrollout.analysis.drift import DriftConfig, assess_drift, homogeneity, psi
from modelserver import driftref

pytestmark = pytest.mark.unit
NAMES = [f"f{i}" for i in range(8)]


def training(rng: np.random.Generator, rows: int = 5000) -> np.ndarray:
    return rng.normal(0.0, 1.0, size=(rows, len(NAMES)))


def window(reference: driftref.DriftReference, x: np.ndarray) -> dict[str, list[int]]:
    """What the server's counters give for these inputs: each value in the bin `bin_index` says."""
    out = {}
    for j, feature in enumerate(reference.features):
        counts = [0] * feature.bins
        for value in x[:, j]:
            counts[driftref.bin_index(feature.edges, float(value))] += 1
        out[feature.name] = counts
    return out


def test_the_reference_counts_are_what_bin_index_gives_and_survive_the_file() -> None:
    x = training(np.random.default_rng(1))
    reference = driftref.build(x, NAMES, bins=10)
    assert all(f.bins == 10 and sum(f.counts) == 5000 for f in reference.features)
    assert window(reference, x) == {f.name: list(f.counts) for f in reference.features}
    assert driftref.parse(reference.to_json()) == reference
    discrete = driftref.build(np.repeat([[0.0], [1.0]], 50, axis=0), ["flag"], bins=10).features[0]
    assert discrete.edges == (0.0, 1.0) and discrete.counts == (0, 50, 50)


@pytest.mark.parametrize(("document", "complaint"), [
    ('{"format": "other"}', "format must be"),
    ('{"format": "modelrollout.drift-reference/v1", "features": []}', "features must be a non-empty list"),
    ('{"format": "modelrollout.drift-reference/v1", "features": [{"name": "a", "edges": [2, 1], "counts": [1, 1, 1]}]}',
     "features[0].edges must be strictly increasing"),
    ('{"format": "modelrollout.drift-reference/v1", "features": [{"name": "a", "edges": [1], "counts": [1]}]}',
     "features[0].counts must have len(edges) + 1"),
])
def test_a_bad_reference_names_the_field(document: str, complaint: str) -> None:
    with pytest.raises(driftref.ReferenceError, match=complaint.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("+", r"\+")):
        driftref.parse(document)


def test_the_homogeneity_test_is_scipys() -> None:
    live, ref = [30, 50, 20, 0], [100, 90, 110, 0]
    statistic, p_value, dof, _ = chi2_contingency(np.array([live[:3], ref[:3]]), correction=False)
    assert homogeneity(live, ref) == pytest.approx((statistic, p_value))
    assert dof == 2
    assert psi([10, 10, 10], [10, 10, 10]) == 0.0


def test_a_stable_input_is_rarely_flagged_in_any_feature() -> None:
    rng = np.random.default_rng(2)
    reference = driftref.build(training(rng), NAMES)
    config = DriftConfig(psi_threshold=0.0)  # the test alone: the PSI guard would hide its error rate
    flagged = [bool(assess_drift(reference.features, window(reference, training(rng, 500)), config).drifted)
               for _ in range(150)]
    assert np.mean(flagged) <= 0.04, np.mean(flagged)  # alpha 0.01 family-wise across 8 features


def test_a_one_sd_shift_of_one_feature_is_flagged_naming_it() -> None:
    rng = np.random.default_rng(3)
    reference = driftref.build(training(rng), NAMES)
    live = training(rng, 500)
    live[:, 5] += 1.0
    report = assess_drift(reference.features, window(reference, live), DriftConfig())
    assert [f.feature for f in report.drifted] == ["f5"]
    assert report.describe().startswith("drifted: f5: PSI ")
    assert report.drifted[0].psi > 0.5


def test_too_few_or_missing_inputs_are_not_judged_never_no_drift() -> None:
    rng = np.random.default_rng(4)
    reference = driftref.build(training(rng), NAMES)
    small = assess_drift(reference.features, window(reference, training(rng, 50) + 3.0), DriftConfig())
    assert not small.judged and not small.drifted and "not judged: 50 live inputs" in small.describe()
    assert not assess_drift(reference.features, {}, DriftConfig()).judged


def test_the_examples_in_the_docstrings_hold() -> None:
    import doctest

    from modelrollout.analysis import drift

    for module in (drift, driftref):
        assert doctest.testmod(module).failed == 0, module.__name__
