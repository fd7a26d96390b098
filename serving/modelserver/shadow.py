"""On a shadow candidate: a mirrored copy's rows as (primary class, candidate class) pairs.

The copy carries the primary's prediction token (modelserver/mirror.py). Only a token this rollout's key
signed for this model is believed, so neither the pairs nor their labels can come from request content:
both classes of every pair must be this model's own classes (the versions of a rollout share their label
set), else the copy is refused as a whole and counted by reason.

>>> from modelserver.tokens import VerifiedToken
>>> primary = VerifiedToken("iris", "1", ("0", "1"), True, 0.0, "id", b"mac")
>>> pairs_of(primary, ("0", "0"), frozenset({"0", "1"}))
[('0', '0'), ('1', '0')]
>>> pairs_of(primary, ("0",), frozenset({"0", "1"}))
<ShadowRefusal.ROW_MISMATCH: 'row_mismatch'>
>>> pairs_of(primary, ("0", "1"), frozenset({"0"}))
<ShadowRefusal.UNKNOWN_CLASS: 'unknown_class'>
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelserver.contract import ShadowLabelOutcome, ShadowRefusal
from modelserver.tokens import VerifiedToken


def pairs_of(primary: VerifiedToken, candidate: Sequence[Any],
             classes: frozenset[str] | None) -> list[tuple[str, str]] | ShadowRefusal:
    """The row pairs, or why there are none. `classes`: this model's class keys, None for a regressor."""
    if classes is None or not primary.classifier:
        return ShadowRefusal.NOT_CLASSIFIER
    if len(primary.predicted) != len(candidate):
        return ShadowRefusal.ROW_MISMATCH
    if not classes.issuperset(primary.predicted):
        return ShadowRefusal.UNKNOWN_CLASS
    return [(str(p), str(c)) for p, c in zip(primary.predicted, candidate, strict=True)]


def label_outcomes(pairs: Sequence[tuple[str, str]], labels: Sequence[str]) -> list[ShadowLabelOutcome]:
    """Who was right on each labelled row of a mirrored copy: (primary class, candidate class) beside the label.

    >>> [o.value for o in label_outcomes([("1", "1"), ("1", "0"), ("0", "1"), ("0", "0")], ["1", "1", "1", "1"])]
    ['both_right', 'stable_only', 'candidate_only', 'both_wrong']
    """
    table = {(True, True): ShadowLabelOutcome.BOTH_RIGHT, (True, False): ShadowLabelOutcome.STABLE_ONLY,
             (False, True): ShadowLabelOutcome.CANDIDATE_ONLY, (False, False): ShadowLabelOutcome.BOTH_WRONG}
    return [table[primary == label, candidate == label] for (primary, candidate), label in zip(pairs, labels,
                                                                                                 strict=True)]
