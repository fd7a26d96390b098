"""Prediction tokens (serving/modelserver/tokens.py): signing, verification, forgery, expiry, replay and the
bounded `version` label, on the data plane without HTTP (tests/serving/test_feedback_tokens.py goes through it)."""

from __future__ import annotations

import asyncio
import base64
import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.linear_model import LogisticRegression

from modelserver.contract import FeedbackRefusal
from modelserver.contract_parse import parse_pod_metrics
from modelserver.dataplane import DataPlane, FeedbackRefused
from modelserver.feedback import FeedbackItem
from modelserver.loading import LoadedModel
from modelserver.metrics import ServerMetrics
from modelserver.prediction import Predictor
from modelserver.settings import Settings
from modelserver.tensors import InferRequest
from modelserver.tokens import MAX_VERSIONS, ReplayGuard, TokenSigner, VerifiedToken, read_key

pytestmark = pytest.mark.unit

KEY = b"k" * 32


def test_a_token_round_trips_what_was_predicted() -> None:
    signer = TokenSigner(KEY, max_age_s=60.0)
    token = signer.sign("fraud", "2", ("1", "0", "1"), "req-7", now=1000.0)
    found = signer.verify(token, "fraud", now=1030.0)
    assert isinstance(found, VerifiedToken)
    assert (found.version, found.predicted, found.classifier, found.prediction_id) == (
        "2", ("1", "0", "1"), True, "req-7")
    regressor = signer.verify(signer.sign("price", "1", (2.5, -1.0), "r", now=1000.0), "price", now=1000.0)
    assert isinstance(regressor, VerifiedToken) and regressor.predicted == (2.5, -1.0) and not regressor.classifier
    many = tuple(str(i % 3) for i in range(1000))  # long: compressed, still well under the header limit
    long_token = signer.sign("fraud", "2", many, "b", now=1000.0)
    assert long_token.startswith("z") and len(long_token) < 400
    found_many = signer.verify(long_token, "fraud", now=1000.0)
    assert isinstance(found_many, VerifiedToken) and found_many.predicted == many


def _rewritten(token: str, **changes: object) -> str:
    """The token's payload with fields changed, the original mac kept: what a forger can make without the key."""
    payload, mac = token.split(".")
    raw = base64.urlsafe_b64decode(payload[1:] + "=" * (-len(payload[1:]) % 4))
    body = orjson.loads(zlib.decompress(raw) if payload[0] == "z" else raw)
    body.update(changes)
    forged = base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()
    return f"j{forged}.{mac}"


def test_forged_altered_and_foreign_tokens_are_refused() -> None:
    signer = TokenSigner(KEY, max_age_s=60.0)
    token = signer.sign("fraud", "2", ("1",), "a", now=1000.0)
    assert signer.verify(_rewritten(token, p=["0"]), "fraud", 1000.0) is FeedbackRefusal.BAD_SIGNATURE
    assert signer.verify(_rewritten(token, v="9"), "fraud", 1000.0) is FeedbackRefusal.BAD_SIGNATURE
    other_rollout = TokenSigner(b"o" * 32, max_age_s=60.0).sign("fraud", "2", ("1",), "a", now=1000.0)
    assert signer.verify(other_rollout, "fraud", 1000.0) is FeedbackRefusal.BAD_SIGNATURE
    assert signer.verify(token, "iris", 1000.0) is FeedbackRefusal.WRONG_MODEL
    for junk in ("", "abc", "a.b.c", "x.!!!", 17, None):
        assert signer.verify(junk, "fraud", 1000.0) in (FeedbackRefusal.MALFORMED, FeedbackRefusal.BAD_SIGNATURE)


def test_tokens_expire_and_future_ones_beyond_clock_skew_are_refused() -> None:
    signer = TokenSigner(KEY, max_age_s=60.0)
    token = signer.sign("fraud", "2", ("1",), "a", now=1000.0)
    assert isinstance(signer.verify(token, "fraud", now=1060.0), VerifiedToken)
    assert signer.verify(token, "fraud", now=1060.5) is FeedbackRefusal.EXPIRED
    assert isinstance(signer.verify(token, "fraud", now=900.0), VerifiedToken)  # a node 100 s behind
    assert signer.verify(token, "fraud", now=600.0) is FeedbackRefusal.EXPIRED


def test_the_replay_guard_is_bounded_in_size_and_age() -> None:
    guard = ReplayGuard(capacity=3, max_age_s=10.0)
    for i, mac in enumerate((b"a", b"b", b"c", b"d")):
        guard.remember(mac, issued_at=float(i), now=float(i))
    assert len(guard) == 3 and not guard.seen(b"a", 4.0) and guard.seen(b"d", 4.0)
    guard.remember(b"e", issued_at=30.0, now=30.0)  # the older ones are past their age: dropped
    assert len(guard) == 1


def test_the_key_file_must_hold_a_real_key(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    with pytest.raises(ValueError, match="holds 4 bytes; at least 16"):
        read_key(str(short))
    good = tmp_path / "key"
    good.write_bytes(KEY)
    assert read_key(str(good)) == KEY


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _model() -> LogisticRegression:
    """A real two-class model: class 1 when the first feature is positive."""
    rows = np.array([[x, y] for x in (-2.0, -1.0, 1.0, 2.0) for y in (-1.0, 0.0, 1.0)])
    return LogisticRegression().fit(rows, (rows[:, 0] > 0).astype(int))


def _plane(tmp_path: Path, version: str, clock: _Clock, ttl: float = 60.0) -> DataPlane:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    settings = Settings(model_name="fraud", model_version=version, feedback_key_file=str(key_file),
                        feedback_ttl_s=ttl)
    plane = DataPlane(settings, ServerMetrics("fraud", version), clock=clock, wall=clock)
    loaded = LoadedModel(estimator=_model(), digest="sha256:0", format="skops", n_features=2,
                         predict_cost_s=0.0, fast_path=None)
    plane._become_ready(Predictor(loaded))
    return plane


def _predict(plane: DataPlane, first: float) -> str:
    request = InferRequest(rows=np.array([[first, 0.0]]), outputs=("predict",), request_id=None)
    return asyncio.run(plane.infer(request)).token


def _feedback_counts(plane: DataPlane) -> dict[str, tuple[float, float]]:
    pod = parse_pod_metrics(plane.metrics.render().decode())
    return {v: (m.feedback_correct, m.feedback_incorrect) for (_n, v), m in pod.models.items()}


def test_a_label_counts_for_the_version_that_predicted_on_another_pod(tmp_path: Path) -> None:
    clock = _Clock()
    stable, canary = _plane(tmp_path, "1", clock), _plane(tmp_path, "2", clock)
    tokens = [_predict(stable, 1.0), _predict(stable, -1.0)]  # predicted 1, then 0
    tally = canary.feedback([FeedbackItem(None, 1, tokens[0]), FeedbackItem(None, 1, tokens[1])])
    assert tally.as_json()["correct"] == 1 and tally.as_json()["incorrect"] == 1
    assert _feedback_counts(canary)["1"] == (1.0, 1.0)  # counted for version 1 on a version-2 pod
    assert _feedback_counts(canary)["2"] == (0.0, 0.0)


def test_refused_tokens_count_nothing_of_their_request_and_are_counted_by_reason(tmp_path: Path) -> None:
    clock = _Clock()
    plane = _plane(tmp_path, "1", clock, ttl=60.0)
    good = _predict(plane, 1.0)
    clock.now -= 120
    old = _predict(plane, 1.0)
    clock.now += 120
    with pytest.raises(FeedbackRefused) as refused:
        plane.feedback([FeedbackItem(None, 1, good), FeedbackItem(None, 1, old)])
    assert refused.value.status == 410 and refused.value.refusals == {1: FeedbackRefusal.EXPIRED}
    assert _feedback_counts(plane)["1"] == (0.0, 0.0)  # the good item was not counted either
    plane.feedback([FeedbackItem(None, 1, good)])
    with pytest.raises(FeedbackRefused) as replay:
        plane.feedback([FeedbackItem(None, 1, good)])
    assert replay.value.status == 409 and replay.value.refusals == {0: FeedbackRefusal.REPLAYED}
    twice = _predict(plane, 1.0)
    with pytest.raises(FeedbackRefused):
        plane.feedback([FeedbackItem(None, 1, twice), FeedbackItem(None, 1, twice)])
    with pytest.raises(FeedbackRefused) as forged:
        plane.feedback([FeedbackItem(None, 1, _rewritten(twice, p=["0"]))])
    assert forged.value.status == 403
    refusals = {reason: n for reason, n in _refusal_counts(plane).items() if n}
    assert refusals == {"expired": 1, "replayed": 2, "bad_signature": 1}
    assert _feedback_counts(plane)["1"] == (1.0, 0.0)


def _refusal_counts(plane: DataPlane) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in plane.metrics.render().decode().splitlines():
        if line.startswith("modelserver_feedback_refused_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def test_an_invalid_label_leaves_the_token_usable_for_the_corrected_one(tmp_path: Path) -> None:
    plane = _plane(tmp_path, "1", _Clock())
    token = _predict(plane, 1.0)
    assert plane.feedback([FeedbackItem(None, "cat", token)]).as_json()["invalid"] == 1
    assert plane.feedback([FeedbackItem(None, 1, token)]).as_json()["correct"] == 1


def test_the_version_label_is_bounded_to_a_few_versions_per_pod(tmp_path: Path) -> None:
    clock = _Clock()
    plane = _plane(tmp_path, "1", clock)
    signer = TokenSigner(KEY, max_age_s=60.0)  # a leaked key could sign any version name
    for i in range(MAX_VERSIONS):
        plane.feedback([FeedbackItem(None, 1, signer.sign("fraud", f"v{i}", ("1",), "x", clock.now))])
    with pytest.raises(FeedbackRefused) as refused:
        plane.feedback([FeedbackItem(None, 1, signer.sign("fraud", "one-too-many", ("1",), "x", clock.now))])
    assert refused.value.refusals == {0: FeedbackRefusal.TOO_MANY_VERSIONS}
    assert len(_feedback_counts(plane)) == MAX_VERSIONS + 1  # v0..v15 and the pod's own "1"
