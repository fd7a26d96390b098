"""Fetch, verify, deserialize, validate and warm up a model file.

The trust model. Pickle-based files (joblib, pickle) run arbitrary code when unpickled, and a matching
digest does not make that safe: it only proves the file is the one whose digest was configured. So a
pickle-based file is opened only when the pod's owner opted in explicitly (MODEL_ALLOW_PICKLE=true, the
operator's spec.model.allowPickle) *and* its sha256 matched MODEL_DIGEST; opting in means trusting
whoever produced the file. skops files are the recommended format: they hold no code, may contain only
trusted types, and are verified against MODEL_DIGEST when one is given.

Every failure raises `LoadError` carrying a reason from `contract.LoadFailure`, which the server
counts in `modelserver_model_load_failures_total` and logs, staying unready instead of crashing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.exceptions import NotFittedError

from modelserver.contract import LoadFailure
from modelserver.fastpath import FastPath, fast_path_for
from modelserver.settings import Settings

log = logging.getLogger(__name__)

PICKLE_FORMATS = ("joblib", "pickle")
_EXTENSIONS = {".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle", ".skops": "skops"}
_FETCH_TIMEOUT_S = 60.0
# skops reports these scikit-learn types as untrusted although they hold only arrays, which skops
# rebuilds from its own state format rather than by unpickling; every tree model needs them.
SKOPS_ALWAYS_TRUSTED = frozenset({"sklearn.tree._tree.Tree"})


class LoadError(Exception):
    def __init__(self, reason: LoadFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    n_features: int
    format: str
    digest: str  # "sha256:<hex>" of the file actually loaded
    predict_cost_s: float  # median single-row predict() time measured at warm-up, on the path used
    fast_path: FastPath | None = None  # a direct predict that reproduced the estimator's output


def detect_format(uri: str, configured: str) -> str:
    """The file format: the configured one, else from the extension.

    >>> detect_format("file:///m/iris.skops", "auto"), detect_format("/m/x.bin", "joblib")
    ('skops', 'joblib')
    """
    if configured != "auto":
        if configured not in (*PICKLE_FORMATS, "skops"):
            raise LoadError(LoadFailure.UNSUPPORTED_FORMAT, f"unknown MODEL_FORMAT {configured!r}")
        return configured
    suffix = Path(urllib.parse.urlparse(uri).path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise LoadError(LoadFailure.UNSUPPORTED_FORMAT,
                        f"cannot tell the format of {uri!r} from {suffix!r}: expected one of "
                        f"{sorted(_EXTENSIONS)} or set MODEL_FORMAT")
    return _EXTENSIONS[suffix]


def fetch(uri: str, workdir: Path) -> Path:
    """A local path holding the model file: file:// and plain paths as they are, http(s) downloaded."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
        if not path.is_file():
            raise LoadError(LoadFailure.FETCH, f"model file {path} does not exist")
        return path
    if parsed.scheme not in ("http", "https"):
        raise LoadError(LoadFailure.FETCH, f"unsupported URI scheme {parsed.scheme!r} in {uri!r}")
    target = workdir / (Path(parsed.path).name or "model")
    try:
        with urllib.request.urlopen(uri, timeout=_FETCH_TIMEOUT_S) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise LoadError(LoadFailure.FETCH, f"downloading {uri}: {exc}") from exc
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def require_pickle_opt_in(fmt: str, allow_pickle: bool) -> None:
    """Refuse a pickle-based format before the file is even fetched, unless the owner opted in."""
    if fmt in PICKLE_FORMATS and not allow_pickle:
        raise LoadError(LoadFailure.PICKLE_NOT_ALLOWED,
                        f"refusing a {fmt} model: loading it runs whatever code the file holds. Use the skops "
                        "format, or set MODEL_ALLOW_PICKLE=true (spec.model.allowPickle) if you trust the "
                        "file's author")


def verify_digest(path: Path, expected: str, fmt: str) -> str:
    """The file's digest, after checking it against `expected` (mandatory for pickle formats)."""
    try:
        actual = sha256_of(path)
    except OSError as exc:  # permissions, a flaky volume: worth retrying like a missing file
        raise LoadError(LoadFailure.FETCH, f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if expected:
        if actual.lower() != expected.lower():
            raise LoadError(LoadFailure.DIGEST_MISMATCH,
                            f"digest mismatch for {path.name}: expected {expected}, file has {actual}")
        return actual
    if fmt in PICKLE_FORMATS:
        # Not the file's own digest as a hint: that would approve whatever file is there now.
        raise LoadError(LoadFailure.MISSING_DIGEST,
                        f"refusing to unpickle {path.name} without MODEL_DIGEST: set it to the digest recorded "
                        "when the model was published (not one computed from the file now in place), "
                        "or use the skops format")
    return actual


def deserialize(path: Path, fmt: str, trusted_types: list[str]) -> Any:
    if fmt == "skops":
        return _load_skops(path, trusted_types)
    try:
        if fmt == "joblib":
            return joblib.load(path)
        with path.open("rb") as f:
            return pickle.load(f)
    except Exception as exc:  # any unpickling failure is a broken file, whatever its type
        raise LoadError(LoadFailure.DESERIALIZE, f"cannot load {fmt} file {path.name}: {exc!r}") from exc


def _load_skops(path: Path, trusted_types: list[str]) -> Any:
    import skops.io  # imported here: only skops files pay for it

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise LoadError(LoadFailure.DESERIALIZE, f"cannot read skops file {path.name}: {exc!r}") from exc
    refused = sorted(set(untrusted) - set(trusted_types) - SKOPS_ALWAYS_TRUSTED)
    if refused:
        raise LoadError(LoadFailure.UNTRUSTED_TYPES,
                        f"skops file {path.name} contains untrusted types {refused}; "
                        "list them in MODEL_TRUSTED_TYPES if you trust them")
    try:
        return skops.io.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise LoadError(LoadFailure.DESERIALIZE, f"cannot load skops file {path.name}: {exc!r}") from exc


def validate(estimator: Any, configured_features: int) -> int:
    """The feature count the model accepts; raises when the model cannot serve rows of it."""
    if not callable(getattr(estimator, "predict", None)):
        raise LoadError(LoadFailure.VALIDATION, f"{type(estimator).__name__} has no predict()")
    own = getattr(estimator, "n_features_in_", None)
    if configured_features and own is not None and int(own) != configured_features:
        raise LoadError(LoadFailure.VALIDATION,
                        f"MODEL_FEATURES={configured_features} but the model was fitted on {own} features")
    n_features = configured_features or (int(own) if own is not None else 0)
    if n_features <= 0:
        raise LoadError(LoadFailure.VALIDATION,
                        "the model has no n_features_in_: set MODEL_FEATURES to the feature count")
    return n_features


# Constant rows tried in turn after the training-like row (when the model ships a drift reference): all zeros,
# then all ones for models that take logs or ratios.
WARM_UP_VALUES = (0.0, 1.0)


def warm_up_rows(n_features: int, typical: Sequence[float] | None = None) -> list[np.ndarray]:
    """The rows warm-up tries in turn: a training-like one first when known, then the constant ones."""
    rows = [np.full((1, n_features), value, dtype=np.float64) for value in WARM_UP_VALUES]
    if typical is not None and len(typical) == n_features:
        rows.insert(0, np.asarray([typical], dtype=np.float64))
    return rows


def warm_up(estimator: Any, n_features: int, fast_path: FastPath | None = None,
            typical: Sequence[float] | None = None) -> float:
    """Run predict (and predict_proba) on a row the model accepts; return the median single-row time.

    The time is taken on the path requests will use (the fast path when there is one), because it
    decides whether adaptive batching pays. A model that refuses every warm-up row's *values* (a
    ValueError or TypeError, what requests get 422 for) may still serve real rows: it is logged as a
    warning and served, with a cost of 0 (no batching). Anything else fails the load.
    """
    refused: Exception | None = None
    for row in warm_up_rows(n_features, typical):
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # log(0) in a pipeline: refused below
                return _timed_predict(estimator, row, fast_path)
        except NotFittedError as exc:  # a ValueError too, but the model's fault, not the row's
            raise LoadError(LoadFailure.WARMUP, f"warm-up predict failed: {exc!r}") from exc
        except (ValueError, TypeError) as exc:
            refused = exc
        except Exception as exc:
            raise LoadError(LoadFailure.WARMUP,
                            f"warm-up predict on {n_features} features failed: {exc!r}") from exc
    log.warning("warm-up skipped: the model refused %srows of all %s (%r); serving it anyway - requests "
                "whose values it refuses get 422", "its training-like row and " if typical is not None else "",
                " and all ".join(f"{v:g}" for v in WARM_UP_VALUES), refused)
    return 0.0


def _timed_predict(estimator: Any, row: np.ndarray, fast_path: FastPath | None) -> float:
    predict = fast_path.predict if fast_path is not None else estimator.predict
    if callable(getattr(estimator, "predict_proba", None)):
        estimator.predict_proba(row)
    estimator.predict(row)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        predict(row)
        timings.append(time.perf_counter() - started)
    return sorted(timings)[len(timings) // 2]


def load_model(settings: Settings, typical_row: Callable[[int], Sequence[float] | None] | None = None) -> LoadedModel:
    """Blocking: fetch, verify, deserialize, validate and warm up the configured model.

    `typical_row(n_features)`: a training-like input to warm up on first (from the model's drift reference), so
    a model that refuses constant rows (a log in its pipeline) is still warmed up on a row it accepts."""
    if not settings.model_uri:
        raise LoadError(LoadFailure.FETCH, "no MODEL_URI configured")
    fmt = detect_format(settings.model_uri, settings.model_format)
    require_pickle_opt_in(fmt, settings.allow_pickle)
    trusted = [t.strip() for t in settings.model_trusted_types.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="modelserver-") as tmp:
        path = fetch(settings.model_uri, Path(tmp))
        digest = verify_digest(path, settings.model_digest, fmt)
        estimator = deserialize(path, fmt, trusted)
    n_features = validate(estimator, settings.model_features)
    typical = typical_row(n_features) if typical_row is not None else None
    cost = warm_up(estimator, n_features, typical=typical)  # first, so a broken model fails as a warm-up failure
    fast_path = fast_path_for(estimator, n_features) if settings.fast_path else None
    if fast_path is not None:
        cost = warm_up(estimator, n_features, fast_path, typical)
    log.info("loaded %s %s (%s, %s, %d features, predict %.3f ms, fast path %s) pid=%d", settings.model_name,
             settings.model_version, fmt, digest, n_features, cost * 1000,
             type(fast_path).__name__ if fast_path else "off", os.getpid())
    return LoadedModel(estimator, n_features, fmt, digest, cost, fast_path)
