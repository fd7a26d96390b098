"""Delayed ground truth: remember predictions in a bounded store and join labels to them later.

The store holds at most `capacity` predictions (one entry per request id, all its rows); the oldest
are evicted first and then count as unknown ids. An entry older than `ttl_s` counts as expired.
A scored feedback consumes its entry, so the same prediction is never scored twice; an invalid one
(a label that is not a class or not a number, or the wrong count of labels) leaves the entry for the
client's corrected label and counts once per feedback item, whatever the number of rows.

>>> store = FeedbackStore(capacity=2, ttl_s=60.0)
>>> store.remember("a", ("1",), now=0.0); store.remember("b", ("0",), now=1.0)
>>> store.remember("c", ("1",), now=2.0)   # evicts "a"
>>> store.take("a", now=3.0), store.take("b", now=3.0), store.take("b", now=3.0)
(None, ('0',), None)
>>> store.take("c", now=100.0)
'expired'
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from modelserver.contract import MAX_OUTCOMES, FeedbackOutcome, FeedbackRefusal
from modelserver.tensors import MAX_ID_LENGTH, BadInput

Remembered = tuple[Any, ...]  # class keys (str) for classifiers, floats for regressors


class FeedbackStore:
    def __init__(self, capacity: int, ttl_s: float) -> None:
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, Remembered]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, prediction_id: str, values: Remembered, now: float) -> None:
        self._entries[prediction_id] = (now, values)
        self._entries.move_to_end(prediction_id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def get(self, prediction_id: str, now: float) -> Remembered | Literal["expired"] | None:
        """The remembered prediction, left in the store (see `forget`)."""
        entry = self._entries.get(prediction_id)
        if entry is None:
            return None
        stored_at, values = entry
        return "expired" if now - stored_at > self._ttl_s else values

    def holds(self, prediction_id: str, now: float) -> bool:
        """Whether `prediction_id` is remembered and still joinable (not expired)."""
        found = self.get(prediction_id, now)
        return found is not None and found != "expired"

    def forget(self, prediction_id: str) -> None:
        self._entries.pop(prediction_id, None)

    def take(self, prediction_id: str, now: float) -> Remembered | Literal["expired"] | None:
        found = self.get(prediction_id, now)
        self.forget(prediction_id)
        return found


def class_key(value: Any) -> str:
    """The string a class or a fed-back label is compared by; JSON 1, 1.0 and numpy int64(1) agree.

    >>> class_key(1), class_key(1.0), class_key(np.int64(1)), class_key("cat"), class_key(True)
    ('1', '1', '1', 'cat', 'True')
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


NO_LABEL: Any = object()  # an item that carries only numeric outcomes


@dataclass(frozen=True)
class FeedbackItem:
    prediction_id: str | None  # joined with this pod's own store (the id path) when there is no token
    label: Any  # scalar for a one-row prediction, or a list with one label per row; NO_LABEL when absent
    token: str | None = None  # the prediction token of the answer: scored on any pod of the rollout
    # Numeric outcomes of the prediction, (name, value) as sent: checked against the declared names by the
    # data plane, which refuses the request naming the item (token items only: they name the version).
    outcomes: tuple[tuple[str, Any], ...] = ()

    @property
    def has_label(self) -> bool:
        return self.label is not NO_LABEL


OUTCOMES_COUNTED = "outcomes"  # the answer's count of numeric outcome values (beside the label outcomes)


@dataclass
class FeedbackTally:
    """Outcome counts per version: None is this pod's own (the id path), a string a token's version."""

    counts: dict[tuple[str | None, FeedbackOutcome], int] = field(default_factory=dict)
    absolute_errors: list[tuple[str | None, float]] = field(default_factory=list)
    # Numeric outcomes as (token version, declared name, value), checked by outcome_refusal.
    outcome_values: list[tuple[str, str, float]] = field(default_factory=list)

    def add(self, outcome: FeedbackOutcome, count: int = 1, version: str | None = None) -> None:
        self.counts[version, outcome] = self.counts.get((version, outcome), 0) + count

    def as_json(self) -> dict[str, int]:
        totals = {o.value: 0 for o in FeedbackOutcome}
        for (_version, outcome), count in self.counts.items():
            totals[outcome.value] += count
        totals[OUTCOMES_COUNTED] = len(self.outcome_values)
        return totals


def parse_feedback(body: Any) -> list[FeedbackItem]:
    """Accept {"token" or "id", "label"}, {"feedback": [...]} or a bare list of such objects; an item with a
    token may carry "outcome": {name: number} beside its label or instead of it.

    >>> [(i.prediction_id, i.token, i.outcomes) for i in parse_feedback({"feedback": [{"id": "a", "label": 1},
    ...     {"token": "t.m", "label": 0}, {"token": "u.n", "outcome": {"revenue": 12.5}}]})]
    [('a', None, ()), (None, 't.m', ()), (None, 'u.n', (('revenue', 12.5),))]
    """
    raw_items = body.get("feedback") if isinstance(body, dict) and "feedback" in body else body
    if isinstance(raw_items, dict):
        raw_items = [raw_items]
    if not isinstance(raw_items, list) or not raw_items:
        raise BadInput('feedback must be {"id": ..., "label": ...}, {"feedback": [...]} or a non-empty list')
    items = []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict) or not ("label" in raw or ("outcome" in raw and "token" in raw)):
            raise BadInput(f"feedback item {index} must be an object with 'token' (or 'id') and 'label' "
                           "(with a token: 'label', 'outcome' or both)")
        if "token" in raw:
            token = raw["token"]
            if not isinstance(token, str) or not token:
                raise BadInput(f"feedback item {index}: 'token' must be the non-empty string an answer carried")
            items.append(FeedbackItem(None, raw.get("label", NO_LABEL), token, _outcomes(raw, index)))
            continue
        if "outcome" in raw:
            raise BadInput(f"feedback item {index}: 'outcome' needs the answer's 'token' (it names the version)")
        prediction_id = raw.get("id")
        if not isinstance(prediction_id, str) or not 0 < len(prediction_id) <= MAX_ID_LENGTH:
            raise BadInput(f"feedback item {index}: 'id' must be a non-empty string of at most "
                           f"{MAX_ID_LENGTH} characters")
        items.append(FeedbackItem(prediction_id, raw["label"]))
    return items


def _outcomes(raw: dict[str, Any], index: int) -> tuple[tuple[str, Any], ...]:
    """The item's outcomes as sent; their names and values are judged by the data plane (a refusal per item)."""
    if "outcome" not in raw:
        return ()
    found = raw["outcome"]
    if not isinstance(found, dict) or not 0 < len(found) <= MAX_OUTCOMES:
        raise BadInput(f"feedback item {index}: 'outcome' must be an object of 1 to {MAX_OUTCOMES} "
                       "{name: number} pairs")
    return tuple(found.items())


def outcome_refusal(outcomes: tuple[tuple[str, Any], ...], declared: frozenset[str]) -> FeedbackRefusal | None:
    """Why an item's outcomes cannot be counted, or None: every name declared, every value a finite number.

    >>> outcome_refusal((("revenue", 3),), frozenset({"revenue"})) is None
    True
    >>> outcome_refusal((("revnue", 3),), frozenset({"revenue"})), outcome_refusal((("revenue", True),),
    ...                                                                           frozenset({"revenue"}))
    (<FeedbackRefusal.UNDECLARED_OUTCOME: 'undeclared_outcome'>, <FeedbackRefusal.INVALID_OUTCOME: 'invalid_outcome'>)
    """
    for name, value in outcomes:
        if name not in declared:
            return FeedbackRefusal.UNDECLARED_OUTCOME
        # Its square too: the server counts the sum of squares, which one huge value would make infinite.
        if not _is_finite_number(value) or not math.isfinite(float(value) * float(value)):
            return FeedbackRefusal.INVALID_OUTCOME
    return None


def labels_per_row(label: Any, rows: int) -> list[Any] | None:
    """One label per remembered row, or None when the count does not match."""
    if isinstance(label, list):
        return label if len(label) == rows else None
    return [label] if rows == 1 else None


def usable_labels(label: Any, rows: int, classes: frozenset[str] | None) -> list[Any] | None:
    """One usable label per row: class keys for a classifier (`classes`), floats for a regressor (None).

    None when any label is unusable, so the whole item is invalid and can be sent again corrected.

    >>> usable_labels([1, 0], 2, frozenset({"0", "1"})), usable_labels([1, "cat"], 2, frozenset({"0", "1"}))
    (['1', '0'], None)
    >>> usable_labels(2.5, 1, None), usable_labels("high", 1, None), usable_labels([1.0], 2, None)
    ([2.5], None, None)
    """
    labels = labels_per_row(label, rows)
    if labels is None:
        return None
    if classes is not None:
        keys = [class_key(v) for v in labels]
        usable = all(not isinstance(v, (dict, list)) and k in classes for v, k in zip(labels, keys, strict=True))
        return keys if usable else None
    return [float(v) for v in labels] if all(_is_finite_number(v) for v in labels) else None


def score_classifier(remembered: Remembered, keys: list[str], tally: FeedbackTally,
                     version: str | None = None) -> None:
    correct = sum(1 for key, predicted in zip(keys, remembered, strict=True) if key == predicted)
    tally.add(FeedbackOutcome.CORRECT, correct, version)
    tally.add(FeedbackOutcome.INCORRECT, len(keys) - correct, version)


def _is_finite_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the float range
        return False


def score_regressor(remembered: Remembered, labels: list[float], tally: FeedbackTally,
                    version: str | None = None) -> None:
    tally.add(FeedbackOutcome.SCORED, len(labels), version)
    tally.absolute_errors.extend((version, abs(label - predicted)) for label, predicted in
                                 zip(labels, remembered, strict=True))
