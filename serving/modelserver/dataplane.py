"""The transport-free data plane: load, readiness, predict, feedback. The HTTP protocols translate to it.

>>> from modelserver.settings import Settings, declared_outcomes
>>> plane = DataPlane(Settings(model_name="iris", model_version="2"), ServerMetrics("iris", "2"))
>>> plane.serves("iris", None), plane.serves("iris", "2"), plane.serves("iris", "3"), plane.is_ready()
(True, True, False, False)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserver import contract as c
from modelserver import driftref
from modelserver.batching import AdaptiveBatcher
from modelserver.contract import (
    REFUSAL_STATUS,
    DriftReferenceState,
    FeedbackRefusal,
    ModelState,
    ShadowLabelOutcome,
    ShadowRefusal,
)
from modelserver.drift import DriftCounter, ReferenceResult, load_reference
from modelserver.feedback import (
    FeedbackItem,
    FeedbackStore,
    FeedbackTally,
    outcome_refusal,
    score_classifier,
    score_regressor,
    usable_labels,
)
from modelserver.loading import LoadError, load_model
from modelserver.metrics import ServerMetrics
from modelserver.prediction import Outputs, Predictor
from modelserver.settings import Settings, declared_outcomes
from modelserver.shadow import label_outcomes, pairs_of
from modelserver.tensors import BadInput, InferRequest, InputSpec, datatype_of
from modelserver.tokens import MAX_VERSIONS, ReplayGuard, TokenSigner, VerifiedToken, random_key, read_key

log = logging.getLogger(__name__)


class NotReady(Exception):
    """Inference asked of a model that is not loaded (503)."""


class FeedbackRefused(Exception):
    """Feedback with a refused token: nothing of the request was counted; answered 4xx naming the items."""

    def __init__(self, refusals: dict[int, FeedbackRefusal]) -> None:
        self.refusals = refusals
        first = refusals[min(refusals)]
        self.status = REFUSAL_STATUS[first]
        super().__init__(f"{len(refusals)} feedback item(s) refused, nothing counted; first: item {min(refusals)} "
                         f"({first.value})")

    def as_json(self) -> dict[str, Any]:
        return {"error": str(self), "refused": {str(i): r.value for i, r in sorted(self.refusals.items())}}


@dataclass(frozen=True)
class Prediction:
    prediction_id: str
    token: str  # signed summary of the prediction: feedback with it counts on any pod of the rollout
    outputs: Outputs
    predicted: tuple[Any, ...]  # class keys (classifier) or values, one per row, as the token has them


class DataPlane:
    def __init__(self, settings: Settings, metrics: ServerMetrics,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = ModelState.LOADING
        # Why the model is not loaded, from contract.LoadFailure: all a client is told. The details
        # (file names, URIs, digests) go to the log and the load-failure metric only.
        self.failure_reason = ""
        self.draining = False
        self.predictor: Predictor | None = None
        self.drift: DriftCounter | None = None  # counts inputs for drift watching, when the model has a reference
        self.batcher: AdaptiveBatcher | None = None
        self.input_spec = InputSpec(settings.model_features or 0, settings.max_rows, False)
        self._store = FeedbackStore(settings.feedback_store_size, settings.feedback_ttl_s)
        self._clock = clock
        self._ids_in_flight: set[str] = set()  # client-chosen ids of requests not yet remembered
        # Tokens are timed by the wall clock: they are checked on other pods, whose monotonic clocks differ.
        self._wall = wall
        key = read_key(settings.feedback_key_file) if settings.feedback_key_file else random_key()
        self.signer = TokenSigner(key, settings.feedback_ttl_s)
        self._replays = ReplayGuard(settings.feedback_store_size, settings.feedback_ttl_s)
        self._token_versions: set[str] = set()  # versions feedback was counted under (bounded)
        self._outcomes: frozenset[str] = frozenset()
        self.declare_outcomes(declared_outcomes(settings.outcomes))
        # Apart from the feedback guard: a copy's token counted here must stay usable for the label.
        self._shadow_replays = ReplayGuard(settings.feedback_store_size, settings.feedback_ttl_s)
        # A counted copy's (primary, candidate) classes per row by its primary token's mac, for the label that
        # the stable pods forward later: the candidate's own answer went back to a stable pod, not to the user.
        self._shadow_store = FeedbackStore(settings.feedback_store_size, settings.feedback_ttl_s)

    # --- lifecycle -------------------------------------------------------------------------------
    async def load(self) -> None:
        """Load in a worker thread, retrying fetch failures with backoff; never raises."""
        pause = 1.0
        while True:
            found: list[ReferenceResult] = []  # the drift reference, read while loading: warm-up's first row
            try:
                loaded = await asyncio.to_thread(load_model, self.settings,
                                                 functools.partial(self._typical_row, found=found))
            except LoadError as exc:
                self.metrics.count_load_failure(exc.reason)
                self.failure_reason = exc.reason.value
                if exc.reason is not c.LoadFailure.FETCH:
                    log.error("model load failed (%s): %s", exc.reason.value, exc)
                    self.state = ModelState.FAILED
                    return
                log.error("model load failed (%s): %s; retrying in %.0fs", exc.reason.value, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.settings.load_retry_max_s)
                continue
            predictor = Predictor(loaded)
            self._watch_drift(found[0] if found else await asyncio.to_thread(load_reference, self.settings,
                                                                                 loaded.n_features),
                              predictor.allow_nan)
            self._become_ready(predictor)
            return

    def declare_outcomes(self, names: Sequence[str]) -> None:
        """Count these numeric outcome names from now on (MODELSERVER_OUTCOMES at start, then the names the
        operator writes into the mounted configuration). A name stays declared once it was: clients that post
        it keep being answered the same way, and its series never vanish. At most MAX_OUTCOMES in all: they
        are label values."""
        new = [n for n in names if n not in self._outcomes]
        room = c.MAX_OUTCOMES - len(self._outcomes)
        if len(new) > room:
            log.warning("outcome names %s not counted: at most %d outcome names per server", new[room:],
                        c.MAX_OUTCOMES)
            new = new[:max(room, 0)]
        if new:
            self._outcomes = self._outcomes | frozenset(new)
            self.metrics.declare_outcomes(new)
            log.info("counting numeric outcomes %s", ", ".join(sorted(self._outcomes)))

    def _typical_row(self, n_features: int, found: list[ReferenceResult]) -> list[float] | None:
        """Blocking (in load_model's thread): the model's drift reference, kept in `found` for the drift watch,
        and a training-like row from it for warm-up (None without a usable reference)."""
        found.append(load_reference(self.settings, n_features))
        return None if found[0].reference is None else driftref.typical_row(found[0].reference)

    def _watch_drift(self, found: ReferenceResult, allow_nan: bool) -> None:
        """Count inputs into the reference's bins when there is a usable one; serving never depends on it."""
        self.metrics.set_drift_state(found.state)
        if found.reference is None:
            level = logging.INFO if found.state in (DriftReferenceState.MISSING, DriftReferenceState.DISABLED) \
                else logging.WARNING
            log.log(level, "drift reference %s: no inputs counted for drift%s", found.state.value,
                    f" ({found.detail})" if found.detail else "")
            return
        self.drift = DriftCounter(found.reference, skip_nan=allow_nan)
        self.metrics.count_drift(self.drift)
        log.info("drift reference loaded: %s, %d features", found.detail, len(found.reference.features))

    def _become_ready(self, predictor: Predictor) -> None:
        s = self.settings
        self.predictor = predictor
        self.input_spec = InputSpec(predictor.loaded.n_features, s.max_rows, predictor.allow_nan,
                                    predictor.has_proba)
        if self.needs_batching(predictor.loaded.predict_cost_s):
            self.batcher = AdaptiveBatcher(predictor.predict, s.max_batch_rows, s.max_batch_wait_ms / 1000)
            self.batcher.start()
        if predictor.is_classifier:
            self.metrics.declare_classes(predictor.class_keys)
        else:
            self.metrics.declare_regressor()
        self.metrics.set_model_info(predictor.loaded.digest, predictor.loaded.format)
        self.state, self.failure_reason = ModelState.READY, ""
        self.metrics.set_ready(not self.draining)
        log.info("model %s %s ready (batching %s)", s.model_name, s.model_version,
                 "on" if self.batcher else "off")

    def needs_batching(self, predict_cost_s: float) -> bool:
        mode = self.settings.batching
        return mode == "on" or (mode == "auto" and predict_cost_s * 1000 > self.settings.batch_threshold_ms)

    def start_draining(self) -> None:
        self.draining = True
        self.metrics.set_ready(False)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()

    # --- queries ----------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return self.state is ModelState.READY and not self.draining

    def readiness(self) -> dict[str, Any]:
        """The readiness answer's body (contract.READINESS_FIELDS): the load failure's code, never its details."""
        if self.is_ready():
            return {"ready": True}
        return {"ready": False, "state": self.state.value, "reason": self.failure_reason}

    def serves(self, name: str, version: str | None) -> bool:
        return name == self.settings.model_name and version in (None, self.settings.model_version)

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata; before the model is loaded the feature count may be unknown (-1).

        `outputs` lists exactly what a request without `outputs` gets, as the protocol says; the
        optional ones (predict_proba, a second model call) are in `parameters.optional_outputs`.
        """
        predictor = self.predictor
        outputs: list[dict[str, Any]] = [{"name": "predict", "shape": [-1],
                                          "datatype": _predict_datatype(predictor)}]
        optional: list[dict[str, Any]] = []
        if predictor is not None and predictor.has_proba:
            optional.append({"name": "predict_proba", "datatype": "FP64",
                             "shape": [-1, len(predictor.class_keys)]})
        inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, self.input_spec.n_features or -1]}]
        return {"name": self.settings.model_name, "versions": [self.settings.model_version],
                "platform": "sklearn", "inputs": inputs, "outputs": outputs,
                "parameters": {"optional_outputs": optional}}

    def require_loaded(self) -> Predictor:
        if self.predictor is None:
            detail = f": {self.failure_reason}" if self.failure_reason else ""
            raise NotReady(f"model {self.settings.model_name} is not ready ({self.state.value}{detail})")
        return self.predictor

    # --- inference --------------------------------------------------------------------------------
    async def infer(self, request: InferRequest) -> Prediction:
        """Predict a validated request and record its metrics."""
        predictor = self.require_loaded()
        if request.request_id is None:
            # 32 random hex digits like uuid4().hex, without building a UUID object per request.
            return await self._predict(predictor, request, os.urandom(16).hex())
        self._claim_id(request.request_id)
        try:
            return await self._predict(predictor, request, request.request_id)
        finally:
            self._ids_in_flight.discard(request.request_id)

    def _claim_id(self, prediction_id: str) -> None:
        """Refuse a client-chosen id that an earlier prediction still holds, so labels never misjoin.

        Checked and claimed without an await in between: the event loop makes that atomic.
        """
        if prediction_id in self._ids_in_flight or self._store.holds(prediction_id, self._clock()):
            raise BadInput(f"request id {prediction_id!r} is still held by an earlier prediction awaiting "
                           "feedback; use a new id per request", status=409)
        self._ids_in_flight.add(prediction_id)

    async def _predict(self, predictor: Predictor, request: InferRequest, prediction_id: str) -> Prediction:
        want_proba = "predict_proba" in request.outputs
        if self.batcher is not None:
            outputs = await self.batcher.submit(request.rows, want_proba)
        else:
            outputs = predictor.predict(request.rows, want_proba)
        if self.drift is not None:
            self.drift.count(request.rows)
        remembered = predictor.remembered(outputs)
        self._store.remember(prediction_id, remembered, self._clock())
        if predictor.is_classifier:
            self.metrics.record_classes(remembered)
        else:
            self.metrics.record_values(outputs.predict)
        if outputs.proba is not None:
            self.metrics.record_confidence(outputs.proba)
        s = self.settings
        token = self.signer.sign(s.model_name, s.model_version, remembered, prediction_id, self._wall())
        return Prediction(prediction_id, token, outputs, remembered)

    def count_shadow_pairs(self, primary_token: str | None, prediction: Prediction) -> ShadowRefusal | None:
        """A mirrored copy was answered: count its rows as (primary class, this model's class) pairs.

        Only from a primary token this rollout's key signed (forged pairs could promote a bad candidate),
        once per token. Returns the refusal (also counted) or None."""
        refusal = self._shadow_pairs(primary_token, prediction)
        if refusal is not None:
            self.metrics.count_shadow_refusal(refusal)
        return refusal

    def _shadow_pairs(self, primary_token: str | None, prediction: Prediction) -> ShadowRefusal | None:
        if not primary_token:
            return ShadowRefusal.MISSING_TOKEN
        wall = self._wall()
        primary = self.signer.verify(primary_token, self.settings.model_name, wall)
        if not isinstance(primary, VerifiedToken):
            return ShadowRefusal.BAD_TOKEN
        if self._shadow_replays.seen(primary.mac, wall):
            return ShadowRefusal.REPLAYED
        predictor = self.predictor
        classes = frozenset(predictor.class_keys) if predictor is not None and predictor.is_classifier else None
        pairs = pairs_of(primary, prediction.predicted, classes)
        if isinstance(pairs, ShadowRefusal):
            return pairs
        self._shadow_replays.remember(primary.mac, primary.issued_at, wall)
        self._shadow_store.remember(primary.mac.hex(), tuple(pairs), self._clock())
        self.metrics.record_shadow_pairs(pairs)
        return None

    def shadow_feedback(self, items: list[FeedbackItem]) -> int:
        """Labels a stable pod forwarded: each joins the pairs of the copy its primary token was counted with,
        once, as labelled pairs (who was right). Labels of requests never mirrored here, or already joined,
        are ignored: this is the candidate's evidence only, never the stable version's feedback count.
        Returns the labelled rows counted."""
        now, wall = self._clock(), self._wall()
        predictor = self.predictor
        classes = frozenset(predictor.class_keys) if predictor is not None and predictor.is_classifier else None
        outcomes: list[ShadowLabelOutcome] = []
        for item in items:
            if not item.has_label:
                continue  # numeric outcomes only: nothing to say about who was right
            token = self.signer.verify(item.token, self.settings.model_name, wall) if item.token else None
            if not isinstance(token, VerifiedToken) or classes is None:
                continue
            pairs = self._shadow_store.get(token.mac.hex(), now)
            if pairs is None or pairs == "expired":
                continue
            labels = usable_labels(item.label, len(pairs), classes)
            if labels is None:
                continue  # kept for a corrected label, as feedback does
            self._shadow_store.forget(token.mac.hex())
            outcomes += label_outcomes(pairs, labels)
        self.metrics.record_shadow_labelled(outcomes)
        return len(outcomes)

    def feedback(self, items: list[FeedbackItem]) -> FeedbackTally:
        """Score labels: by token (any pod's prediction) or by id (this pod's store); every item lands in
        exactly one outcome per row. Raises FeedbackRefused, counting nothing, if any token is refused."""
        now, wall = self._clock(), self._wall()
        verified = self._verify_tokens(items, wall)
        tally = FeedbackTally()
        for index, item in enumerate(items):
            if item.token is None:
                self._join(item, now, tally)
            else:
                self._score_token(verified[index], item, wall, tally)
        for (version, outcome), count in tally.counts.items():
            if count:
                self.metrics.record_feedback(outcome, count, version)
        for version, name, value in tally.outcome_values:
            self.metrics.record_outcome(name, value, version)
        for version, error in tally.absolute_errors:
            self.metrics.record_absolute_error(error, version)
        return tally

    def _verify_tokens(self, items: list[FeedbackItem], wall: float) -> dict[int, VerifiedToken]:
        """Every token of the request verified and every outcome declared and finite, or FeedbackRefused
        (refusals counted) before anything is scored: a client then knows that none of its batch counted and
        can resend the good items."""
        refusals: dict[int, FeedbackRefusal] = {}
        verified: dict[int, VerifiedToken] = {}
        in_request: set[bytes] = set()
        versions = set(self._token_versions)
        for index, item in enumerate(items):
            if item.token is None:
                continue
            found = self.signer.verify(item.token, self.settings.model_name, wall)
            keys = guard_keys(found.mac, item) if isinstance(found, VerifiedToken) else ()
            if isinstance(found, VerifiedToken):
                if any(k in in_request or self._replays.seen(k, wall) for k in keys):
                    found = FeedbackRefusal.REPLAYED
                elif found.version not in versions and len(versions) >= MAX_VERSIONS:
                    found = FeedbackRefusal.TOO_MANY_VERSIONS
                else:
                    found = outcome_refusal(item.outcomes, self._outcomes) or found
            if isinstance(found, FeedbackRefusal):
                refusals[index] = found
                continue
            in_request.update(keys)
            versions.add(found.version)
            verified[index] = found
        if refusals:
            for reason, count in Counter(refusals.values()).items():
                self.metrics.count_refusal(reason, count)
            raise FeedbackRefused(refusals)
        self._token_versions = versions
        return verified

    def _score_token(self, token: VerifiedToken, item: FeedbackItem, wall: float, tally: FeedbackTally) -> None:
        """Count under the token's version: its label and its outcomes, each once (guard_keys)."""
        for name, value in item.outcomes:
            self._replays.remember(outcome_key(token.mac, name), token.issued_at, wall)
            tally.outcome_values.append((token.version, name, float(value)))
        if item.has_label:
            self._score_label(token, item.label, wall, tally)

    def _score_label(self, token: VerifiedToken, label: Any, wall: float, tally: FeedbackTally) -> None:
        """Labels are checked against this pod's classes: the versions of a rollout share their label set. An
        invalid label leaves the token usable for the corrected one."""
        predictor = self.predictor
        classes = frozenset(predictor.class_keys) if predictor is not None and predictor.is_classifier else None
        labels = None
        if predictor is not None and token.classifier == (classes is not None):
            labels = usable_labels(label, len(token.predicted), classes)
        if labels is None:
            tally.add(c.FeedbackOutcome.INVALID, 1, token.version)
            return
        self._replays.remember(token.mac, token.issued_at, wall)
        if classes is not None:
            score_classifier(token.predicted, labels, tally, token.version)
        else:
            score_regressor(token.predicted, labels, tally, token.version)

    def _join(self, item: FeedbackItem, now: float, tally: FeedbackTally) -> None:
        """Score one item; the prediction is consumed only once it has been scored (or has expired)."""
        prediction_id = item.prediction_id or ""  # parse_feedback gives an item without a token an id
        remembered = self._store.get(prediction_id, now)
        if remembered is None:
            tally.add(c.FeedbackOutcome.UNKNOWN_ID)
            return
        if remembered == "expired":
            self._store.forget(prediction_id)
            tally.add(c.FeedbackOutcome.EXPIRED_ID)
            return
        predictor = self.predictor
        classes = frozenset(predictor.class_keys) if predictor is not None and predictor.is_classifier else None
        labels = usable_labels(item.label, len(remembered), classes) if predictor is not None else None
        if labels is None:
            # A typo must not cost the real label: the client can still send it for this prediction.
            tally.add(c.FeedbackOutcome.INVALID)
            return
        self._store.forget(prediction_id)
        if classes is not None:
            score_classifier(remembered, labels, tally)
        else:
            score_regressor(remembered, labels, tally)


def outcome_key(mac: bytes, name: str) -> bytes:
    """The replay guard's key for one outcome of a token: a token is counted once for its label (its mac is the
    key) and once for each outcome name, so a label and an outcome may arrive together or separately.

    >>> outcome_key(b"m", "revenue")
    b'm\\x00outcome:revenue'
    """
    return mac + b"\x00outcome:" + name.encode()


def guard_keys(mac: bytes, item: FeedbackItem) -> tuple[bytes, ...]:
    """What an item would count, as replay guard keys: its label (the mac) and each of its outcomes."""
    return (*((mac,) if item.has_label else ()), *(outcome_key(mac, name) for name, _ in item.outcomes))


def _predict_datatype(predictor: Predictor | None) -> str:
    if predictor is None or not predictor.is_classifier:
        return "FP64"
    return datatype_of(np.asarray(predictor.estimator.classes_))
