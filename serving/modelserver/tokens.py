"""Prediction tokens: feedback that any pod of a rollout can score, without shared storage.

Every answer carries a token, `<payload>.<mac>`: the payload (JSON, base64url; zlib-compressed and
marked with a leading `z` when long) names the
model, the version, what was predicted (class keys or values, one per row), when (wall clock, so pods
agree) and the prediction id; the mac is HMAC-SHA256 of the payload with the rollout's key, which the
operator provisions in a Secret mounted by every pod of the rollout. A pod receiving the token with a
label verifies the mac, the model, the age and that it has not scored this token before, then counts
the label for the version *in the token*: the pod that predicted may be long gone.

Replay detection is per pod (a bounded memory of the tokens it scored, kept for the token's maximum
age): the same token posted to two different pods is counted twice. Only the key holders (the pods and
whoever reads the Secret) can make tokens, so this is about retries and duplicates, not forgery.

>>> signer = TokenSigner(b"k" * 32, max_age_s=60.0)
>>> token = signer.sign("iris", "2", ("1", "0"), "abc", now=1000.0)
>>> signer.verify(token, "iris", now=1010.0).predicted, signer.verify(token, "iris", now=1100.0)
(('1', '0'), <FeedbackRefusal.EXPIRED: 'expired'>)
>>> signer.verify(token[:-2] + "AA", "iris", now=1010.0), signer.verify(token, "fraud", now=1010.0)
(<FeedbackRefusal.BAD_SIGNATURE: 'bad_signature'>, <FeedbackRefusal.WRONG_MODEL: 'wrong_model'>)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from modelserver.contract import FeedbackRefusal

# A pod more than this ahead of the verifying one is tolerated (NTP keeps nodes far closer); a token
# further in the future than that was not made by a pod of this rollout.
CLOCK_SKEW_S = 300.0
MIN_KEY_BYTES = 16
# Token versions this pod will count under; a rollout has two (three during a quick re-rollout). More
# is refused as `too_many_versions`, so the `version` label stays bounded even if the key leaked.
MAX_VERSIONS = 16
MAX_TOKEN_CHARS = 1_000_000
# zlib's set-up costs ~0.2 ms a call, more than the whole of a one-row prediction: only long payloads (many
# rows, where repeated class keys shrink several-fold) are compressed.
COMPRESS_ABOVE = 512
MAX_TOKEN_HEADER_CHARS = 4096  # longer tokens travel in the answer's body only (proxies limit header sizes)


@dataclass(frozen=True)
class VerifiedToken:
    model: str
    version: str
    predicted: tuple[Any, ...]  # class keys (str) of a classifier, floats of a regressor
    classifier: bool
    issued_at: float
    prediction_id: str
    mac: bytes


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def random_key() -> bytes:
    return os.urandom(32)


def read_key(path: str) -> bytes:
    """The key file's bytes (the Secret's value, mounted read-only). ValueError if too short to be one."""
    with open(path, "rb") as f:
        key = f.read()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"feedback key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} needed")
    return key


class TokenSigner:
    def __init__(self, key: bytes, max_age_s: float) -> None:
        self._key = key
        self.max_age_s = max_age_s

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()

    def sign(self, model: str, version: str, predicted: tuple[Any, ...], prediction_id: str, now: float) -> str:
        classifier = all(isinstance(p, str) for p in predicted)
        body = {"m": model, "v": version, "c": classifier, "p": list(predicted), "t": round(now, 3),
                "i": prediction_id}
        raw = orjson.dumps(body)
        payload = "z" + _b64(zlib.compress(raw, 6)) if len(raw) > COMPRESS_ABOVE else "j" + _b64(raw)
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: Any, model: str, now: float) -> VerifiedToken | FeedbackRefusal:
        """The token's content if this rollout's key signed it for `model` within the maximum age."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return FeedbackRefusal.MALFORMED
        payload, mac_text = token.split(".")
        try:
            mac = _unb64(mac_text)
        except (binascii.Error, ValueError):
            return FeedbackRefusal.MALFORMED
        if not hmac.compare_digest(mac, self._mac(payload)):
            return FeedbackRefusal.BAD_SIGNATURE
        found = _decode(payload, mac)
        if found is None:
            return FeedbackRefusal.MALFORMED  # signed by us, so only a server bug gets here
        if found.model != model:
            return FeedbackRefusal.WRONG_MODEL
        if now - found.issued_at > self.max_age_s or found.issued_at - now > CLOCK_SKEW_S:
            return FeedbackRefusal.EXPIRED
        return found


def _decode(payload: str, mac: bytes) -> VerifiedToken | None:
    try:
        raw = _unb64(payload[1:])
        body = orjson.loads(zlib.decompress(raw) if payload.startswith("z") else raw)
        predicted = tuple(str(p) if body["c"] else float(p) for p in body["p"])
        return VerifiedToken(str(body["m"]), str(body["v"]), predicted, bool(body["c"]), float(body["t"]),
                             str(body["i"]), mac)
    except (ValueError, KeyError, TypeError, zlib.error, binascii.Error, orjson.JSONDecodeError):
        return None


class ReplayGuard:
    """The tokens this pod has scored, each kept until it would have expired anyway.

    Bounded: beyond `capacity` the oldest are forgotten first (and could then be scored again); a
    `capacity` at or above the labels a pod receives per maximum token age closes that gap.

    >>> guard = ReplayGuard(capacity=2, max_age_s=10.0)
    >>> guard.seen(b"a", 0.0), guard.remember(b"a", 0.0, now=0.0), guard.seen(b"a", 5.0)
    (False, None, True)
    >>> guard.seen(b"a", 11.0)   # expired: refused by age before the guard is asked
    False
    """

    def __init__(self, capacity: int, max_age_s: float) -> None:
        self._capacity = capacity
        self._max_age_s = max_age_s
        self._scored: OrderedDict[bytes, float] = OrderedDict()  # mac -> issued_at, oldest first

    def __len__(self) -> int:
        return len(self._scored)

    def seen(self, mac: bytes, now: float) -> bool:
        issued = self._scored.get(mac)
        return issued is not None and now - issued <= self._max_age_s

    def remember(self, mac: bytes, issued_at: float, now: float) -> None:
        self._scored[mac] = issued_at
        self._scored.move_to_end(mac)
        while self._scored and (len(self._scored) > self._capacity or
                                now - next(iter(self._scored.values())) > self._max_age_s):
            self._scored.popitem(last=False)
