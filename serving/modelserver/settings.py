"""Server settings: every one is a CLI flag and an environment variable (a pod spec sets env).

A flag wins over the environment, the environment over the default.

>>> s = read_settings(["--model-name", "iris", "--port", "9000"], env={"MODEL_VERSION": "3"})
>>> (s.model_name, s.model_version, s.port, s.host)
('iris', '3', 9000, '0.0.0.0')
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from modelserver.contract import MAX_OUTCOMES, OUTCOME_NAME_PATTERN

BATCHING_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Settings:
    model_name: str = "model"
    model_version: str = "1"
    model_uri: str = ""
    model_digest: str = ""  # "sha256:<hex>"
    model_format: str = "auto"  # auto | joblib | pickle | skops
    model_features: int = 0  # 0: take the model's n_features_in_
    model_trusted_types: str = ""  # comma-separated extra types a skops file may contain
    # joblib/pickle run code when loaded: opening one needs this opt-in as well as MODEL_DIGEST.
    allow_pickle: bool = False
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 4 * 1024 * 1024
    max_rows: int = 10_000  # rows in one request
    # A client must send its whole body within this, so slow clients cannot pile up open connections.
    body_read_timeout_s: float = 30.0
    # A request's headers must all arrive within this from its first byte (408): without it a client
    # trickling header lines held its connection for the whole idle timeout.
    header_read_timeout_s: float = 10.0
    # Closes a connection that sits idle this long. Above the common load balancers' backend idle
    # timeouts (GCP 600 s, AWS ALB 60 s) so that they, not we, close idle ones.
    idle_timeout_s: float = 620.0
    fast_path: bool = True  # direct predict for linear and forest classifiers, verified at load
    batching: str = "auto"  # auto: batch when one predict() costs more than batch_threshold_ms
    # Defaults from bench/serving (docs/benchmarks.md): a forest's direct path costs ~0.15 ms per call
    # whatever the rows, and merging still paid (about 3,000 vs 2,250 one-row req/s at 16 clients); a
    # linear model's ~3 us call does not. 1024 rows lets sixteen 64-row requests share one call (64 rows:
    # 1,280 vs 207 req/s on sklearn's path); a 2 ms wait beat 0 and 5 ms.
    batch_threshold_ms: float = 0.1
    max_batch_rows: int = 1024
    max_batch_wait_ms: float = 2.0
    feedback_store_size: int = 100_000
    feedback_ttl_s: float = 3600.0
    # The rollout's prediction-token key (a mounted Secret); without one a random per-process key is made,
    # so tokens verify on this process only.
    feedback_key_file: str = ""
    # Names of the numeric outcomes clients may post with feedback (comma-separated; the operator sets them from
    # spec.strategy.abTest.goal): the only values the outcome metrics' `outcome` label takes.
    outcomes: str = ""
    # Mirroring to a shadow candidate (modelserver/mirror.py): the configuration file the operator mounts
    # (a ConfigMap), watched for changes; without one the server never mirrors.
    mirror_config_file: str = ""
    mirror_queue_size: int = 100  # copies waiting for a worker; beyond it a copy is dropped and counted
    mirror_workers: int = 4
    mirror_timeout_s: float = 1.0  # per copy, connection to answer
    # Drift watching (modelserver/drift.py): the model's training reference, "" = beside the model file
    # (<name>.drift.json), "none" = off; its digest when published with one; and the most feature x bin series.
    drift_reference: str = ""
    drift_reference_digest: str = ""
    drift_max_series: int = 2000
    drain_delay_s: float = 3.0  # keep serving after SIGTERM while endpoints stop routing here
    shutdown_timeout_s: float = 25.0
    load_retry_max_s: float = 60.0
    log_level: str = "INFO"


# field -> (environment variable, help)
_ENV: dict[str, tuple[str, str]] = {
    "model_name": ("MODEL_NAME", "model name in URLs and metrics"),
    "model_version": ("MODEL_VERSION", "model version"),
    "model_uri": ("MODEL_URI", "file:// URL, plain path or http(s):// URL of the model file"),
    "model_digest": ("MODEL_DIGEST", "expected 'sha256:<hex>' of the model file"),
    "model_format": ("MODEL_FORMAT", "auto (from extension), joblib, pickle or skops"),
    "model_features": ("MODEL_FEATURES", "expected feature count (0: model's n_features_in_)"),
    "model_trusted_types": ("MODEL_TRUSTED_TYPES", "comma-separated types to trust in a skops file"),
    "allow_pickle": ("MODEL_ALLOW_PICKLE", "open joblib/pickle files, which run code when loaded (needs "
                                           "MODEL_DIGEST too); prefer skops"),
    "host": ("HOST", "address to listen on"),
    "port": ("PORT", "port for the APIs and /metrics"),
    "max_body_bytes": ("MODELSERVER_MAX_BODY_BYTES", "largest request body accepted (413 above)"),
    "max_rows": ("MODELSERVER_MAX_ROWS", "most rows in one request"),
    "body_read_timeout_s": ("MODELSERVER_BODY_READ_TIMEOUT_S", "seconds a client has to send its body (408)"),
    "header_read_timeout_s": ("MODELSERVER_HEADER_READ_TIMEOUT_S", "seconds a client has to send a request's "
                                                                   "headers from its first byte (408)"),
    "idle_timeout_s": ("MODELSERVER_IDLE_TIMEOUT_S", "seconds before closing a connection that is idle"),
    "fast_path": ("MODELSERVER_FAST_PATH", "direct predict for linear/forest classifiers, verified at load"),
    "batching": ("MODELSERVER_BATCHING", "adaptive batching: auto, on or off"),
    "batch_threshold_ms": ("MODELSERVER_BATCH_THRESHOLD_MS", "auto batching when predict() costs more"),
    "max_batch_rows": ("MODELSERVER_MAX_BATCH_ROWS", "rows merged into one predict() at most"),
    "max_batch_wait_ms": ("MODELSERVER_MAX_BATCH_WAIT_MS", "longest wait for a batch to fill"),
    "feedback_store_size": ("MODELSERVER_FEEDBACK_STORE_SIZE", "predictions remembered for feedback"),
    "feedback_ttl_s": ("MODELSERVER_FEEDBACK_TTL_S", "seconds a prediction (and its token) stays joinable"),
    "feedback_key_file": ("MODELSERVER_FEEDBACK_KEY_FILE", "file holding the key that signs prediction tokens "
                                                           "(shared by every pod of a rollout)"),
    "outcomes": ("MODELSERVER_OUTCOMES", "comma-separated names of the numeric outcomes feedback may carry "
                                         "(e.g. revenue,rating); others are refused"),
    "mirror_config_file": ("MODELSERVER_MIRROR_CONFIG", "file with the mirror target, percent and candidate version "
                                                        "(JSON or YAML), re-read when it changes; missing: off"),
    "mirror_queue_size": ("MODELSERVER_MIRROR_QUEUE_SIZE", "mirrored copies waiting to be sent (full: dropped)"),
    "mirror_workers": ("MODELSERVER_MIRROR_WORKERS", "concurrent mirrored copies in flight"),
    "mirror_timeout_s": ("MODELSERVER_MIRROR_TIMEOUT_S", "seconds a mirrored copy may take"),
    "drift_reference": ("MODELSERVER_DRIFT_REFERENCE", "URI of the model's drift reference (default: "
                                                       "<model>.drift.json beside the model file; none: off)"),
    "drift_reference_digest": ("MODELSERVER_DRIFT_REFERENCE_DIGEST", "expected 'sha256:<hex>' of the drift reference"),
    "drift_max_series": ("MODELSERVER_DRIFT_MAX_SERIES", "most feature x bin series counted for drift (above: "
                                                         "nothing counted, state too_many_series)"),
    "drain_delay_s": ("MODELSERVER_DRAIN_DELAY_S", "seconds to keep serving, unready, after SIGTERM"),
    "shutdown_timeout_s": ("MODELSERVER_SHUTDOWN_TIMEOUT_S", "longest wait for in-flight requests"),
    "load_retry_max_s": ("MODELSERVER_LOAD_RETRY_MAX_S", "longest pause between model fetch retries"),
    "log_level": ("MODELSERVER_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR"),
}


def parse_bool(text: str) -> bool:
    """Example:

    >>> parse_bool("True"), parse_bool("0"), parse_bool("yes")
    (True, False, True)
    """
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _converter(default: Any) -> Callable[[str], Any]:
    if isinstance(default, bool):
        return parse_bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if default is None:
        return int
    return str


class _OneLineParser(argparse.ArgumentParser):
    """A mistake is one line on stderr (the usage of 30 flags would bury it) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="modelserver", description="Serve one scikit-learn model.")
    for f in fields(Settings):
        env_name, help_text = _ENV[f.name]
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                            help=f"{help_text} [env {env_name}, default {f.default!r}]")
    return parser


def read_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags, then environment, then defaults. Raises SystemExit on a bad value."""
    environ = os.environ if env is None else env
    parser = _parser()
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = getattr(args, f.name)
        if raw is None:
            raw = environ.get(_ENV[f.name][0])
        if raw is None:
            continue
        try:
            values[f.name] = _converter(f.default)(raw)
        except ValueError as exc:
            parser.error(f"--{f.name.replace('_', '-')} / {_ENV[f.name][0]}: {exc}")
    settings = Settings(**values)
    problem = settings_problem(settings)
    if problem:
        parser.error(problem)
    return settings


def declared_outcomes(text: str) -> tuple[str, ...]:
    """The outcome names of MODELSERVER_OUTCOMES; ValueError names the first bad one.

    >>> declared_outcomes(" revenue, rating "), declared_outcomes("")
    (('revenue', 'rating'), ())
    >>> declared_outcomes("Revenue")
    Traceback (most recent call last):
    ...
    ValueError: MODELSERVER_OUTCOMES: 'Revenue' must match ^[a-z][a-z0-9_]{0,62}$
    """
    names = tuple(n.strip() for n in text.split(",")) if text.strip() else ()
    for name in names:
        if not re.fullmatch(OUTCOME_NAME_PATTERN, name):
            raise ValueError(f"MODELSERVER_OUTCOMES: {name!r} must match {OUTCOME_NAME_PATTERN}")
    if len(set(names)) != len(names):
        raise ValueError("MODELSERVER_OUTCOMES: a name appears twice")
    if len(names) > MAX_OUTCOMES:
        raise ValueError(f"MODELSERVER_OUTCOMES: {len(names)} names, at most {MAX_OUTCOMES}")
    return names


def settings_problem(s: Settings) -> str | None:
    """The first inconsistency in `s`, or None."""
    try:
        declared_outcomes(s.outcomes)
    except ValueError as exc:
        return str(exc)
    if s.batching not in BATCHING_MODES:
        return f"batching must be one of {BATCHING_MODES}, not {s.batching!r}"
    if s.model_digest and not s.model_digest.startswith("sha256:"):
        return "MODEL_DIGEST must look like sha256:<hex>"
    if s.max_batch_rows < 1 or s.max_rows < 1 or s.feedback_store_size < 1:
        return "max batch rows, max rows and feedback store size must be positive"
    if s.mirror_queue_size < 1 or s.mirror_workers < 1 or not s.mirror_timeout_s > 0:
        return "MODELSERVER_MIRROR_QUEUE_SIZE, _WORKERS and _TIMEOUT_S must be positive"
    if s.body_read_timeout_s <= 0 or s.idle_timeout_s <= 0 or s.header_read_timeout_s <= 0:
        return ("MODELSERVER_BODY_READ_TIMEOUT_S, MODELSERVER_HEADER_READ_TIMEOUT_S and MODELSERVER_IDLE_TIMEOUT_S "
                "must be positive")
    return None
