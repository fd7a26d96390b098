"""The rollout's runtime configuration of its pods: which candidate gets copies of answered requests, and how
many; and which numeric outcomes feedback may carry beside those of MODELSERVER_OUTCOMES.

The operator writes it into a ConfigMap mounted as a volume (`MODELSERVER_MIRROR_CONFIG` names the file);
the server polls the file about once a second and applies a change without a restart. The kubelet
updates a mounted ConfigMap by swapping the `..data` symlink to a new directory, so the file's path
resolves to a new inode: the poll compares the resolved file's device, inode, size and modification time,
which catches that swap as well as an in-place rewrite. JSON or YAML (JSON is YAML):

    target: http://iris-canary.models.svc:8080   # the candidate's own Service (base URL)
    percent: 25                                  # of answered requests, 0..100; 0 = off
    version: "2"                                 # the candidate's version
    outcomes: [revenue]                          # numeric outcome names to count (an A/B experiment's goal)
    sticky: {cookie: modelrollout-arm, maxAge: 86400}   # an A/B sticky split: name the answering version

The outcome names are here, not only in MODELSERVER_OUTCOMES, because a pod template never changes: the stable
version's pods predate the A/B experiment that compares it on an outcome, and they must count it too.

>>> parse_mirror_config('{"target": "http://cand:8080/", "percent": 10, "version": "2"}')
MirrorConfig(target='http://cand:8080', percent=10.0, version='2', outcomes=(), sticky_cookie='', sticky_max_age=0)
>>> parse_mirror_config("percent: 0\\noutcomes: [revenue]").outcomes
('revenue',)
>>> parse_mirror_config("percent: 0").is_on
False
>>> parse_mirror_config("percent: 150")
Traceback (most recent call last):
...
modelserver.mirror_config.MirrorConfigError: percent: must be a number from 0 to 100, got 150
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from modelserver.contract import MAX_OUTCOMES, OUTCOME_NAME_PATTERN, MirrorConfigOutcome

log = logging.getLogger(__name__)

FIELDS = ("target", "percent", "version", "outcomes", "sticky")
_COOKIE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the operator's spec.strategy.abTest.sticky.cookie
# The version becomes a label value (modelserver_mirror_percent's target_version): a Kubernetes label's shape.
_VERSION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
MAX_CONFIG_BYTES = 64 * 1024  # a ConfigMap holds three fields; anything larger is not one


class MirrorConfigError(ValueError):
    """A configuration that cannot be applied; the message names the field."""


@dataclass(frozen=True)
class MirrorConfig:
    target: str  # base URL of the candidate's Service, without a trailing slash
    percent: float  # share of answered requests copied, 0..100
    version: str  # the candidate's version (reported, and a check on what the operator meant)
    outcomes: tuple[str, ...] = ()  # numeric outcome names feedback may carry (declared for good once read)
    sticky_cookie: str = ""  # set this cookie to the answering version (an A/B experiment's sticky split)
    sticky_max_age: int = 0  # its Max-Age, seconds

    @property
    def is_on(self) -> bool:
        return self.percent > 0


OFF = MirrorConfig("", 0.0, "")


def parse_mirror_config(text: str) -> MirrorConfig:
    """The configuration in `text` (JSON or YAML), or MirrorConfigError naming the first bad field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MirrorConfigError(f"not JSON or YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise MirrorConfigError(f"must be a mapping with {', '.join(FIELDS)}, got {type(document).__name__}")
    unknown = sorted(str(k) for k in document if k not in FIELDS)
    if unknown:
        raise MirrorConfigError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(FIELDS)}")
    percent = _percent(document.get("percent"))
    outcomes = _outcomes(document.get("outcomes", []))
    cookie, max_age = _sticky(document.get("sticky"))
    if percent == 0 and "target" not in document and "version" not in document:
        return MirrorConfig("", 0.0, "", outcomes, cookie, max_age)
    return MirrorConfig(_target(document.get("target")), percent, _version(document.get("version")), outcomes,
                        cookie, max_age)


def _sticky(value: Any) -> tuple[str, int]:
    """(cookie name, Max-Age seconds) of a sticky split, ("", 0) without one."""
    if value is None:
        return "", 0
    if not isinstance(value, dict) or set(value) - {"cookie", "maxAge"}:
        raise MirrorConfigError(f"sticky: must be {{cookie, maxAge}}, got {value!r}")
    cookie, age = value.get("cookie"), value.get("maxAge")
    if not isinstance(cookie, str) or not _COOKIE.match(cookie):
        raise MirrorConfigError(f"sticky.cookie: must match {_COOKIE.pattern}, got {cookie!r}")
    if not isinstance(age, int) or isinstance(age, bool) or not 1 <= age <= 10 * 365 * 86400:
        raise MirrorConfigError(f"sticky.maxAge: must be whole seconds from 1 to ten years, got {age!r}")
    return cookie, age


def _outcomes(value: Any) -> tuple[str, ...]:
    """Outcome names become label values: the contract's alphabet, no repeats, at most MAX_OUTCOMES."""
    if not isinstance(value, list) or len(value) > MAX_OUTCOMES:
        raise MirrorConfigError(f"outcomes: must be a list of at most {MAX_OUTCOMES} names, got {value!r}")
    for name in value:
        if not isinstance(name, str) or not re.fullmatch(OUTCOME_NAME_PATTERN, name):
            raise MirrorConfigError(f"outcomes: {name!r} must match {OUTCOME_NAME_PATTERN}")
    if len(set(value)) != len(value):
        raise MirrorConfigError("outcomes: a name appears twice")
    return tuple(value)


def _percent(value: Any) -> float:
    # bool is an int in Python; `percent: yes` is a mistake, not 1 %.
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not 0 <= value <= 100:
        raise MirrorConfigError(f"percent: must be a number from 0 to 100, got {value!r}")
    return float(value)


def _target(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise MirrorConfigError(f"target: must be the candidate's base URL (http://host:port), got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MirrorConfigError(f"target: must be an http:// or https:// URL with a host, got {value!r}")
    if parts.query or parts.fragment:
        raise MirrorConfigError(f"target: must not have a query or fragment, got {value!r}")
    try:
        _ = parts.port  # raises ValueError on a port out of range or not a number
    except ValueError:
        raise MirrorConfigError(f"target: bad port in {value!r}") from None
    return value.rstrip("/")


def _version(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # YAML reads `version: 2` as a number
    if not isinstance(value, str) or not _VERSION.match(value):
        raise MirrorConfigError("version: must be the candidate's version (letters, digits, '.', '_', '-'; at "
                                f"most 63), got {value!r}")
    return value


def read_mirror_config(path: str) -> tuple[MirrorConfig, MirrorConfigOutcome, str]:
    """(configuration to apply, outcome, detail for the log). A missing or bad file is OFF, never raises."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return OFF, MirrorConfigOutcome.MISSING, f"{path} does not exist"
    except OSError as exc:
        return OFF, MirrorConfigOutcome.INVALID, f"{path}: {exc.strerror or exc}"
    if len(raw) > MAX_CONFIG_BYTES:
        return OFF, MirrorConfigOutcome.INVALID, f"{path}: larger than {MAX_CONFIG_BYTES} bytes"
    try:
        config = parse_mirror_config(raw.decode("utf-8"))
    except (MirrorConfigError, UnicodeDecodeError) as exc:
        return OFF, MirrorConfigOutcome.INVALID, f"{path}: {exc}"
    except Exception as exc:  # whatever a YAML parser may raise: a bad file must not stop serving
        return OFF, MirrorConfigOutcome.INVALID, f"{path}: {type(exc).__name__}: {exc}"
    outcome = MirrorConfigOutcome.ON if config.is_on else MirrorConfigOutcome.OFF
    return config, outcome, path


FileIdentity = tuple[int, int, int, int] | None  # (device, inode, size, mtime in ns) of the resolved file


def file_identity(path: str) -> FileIdentity:
    """What changes when the file does, following symlinks (the kubelet's `..data` swap); None if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class MirrorConfigWatcher:
    """Re-reads the file when its identity changes and hands the result to `apply` (one log line each)."""

    def __init__(self, path: str, apply: Callable[[MirrorConfig], None],
                 count: Callable[[MirrorConfigOutcome], None]) -> None:
        self.path = path
        self._apply = apply
        self._count = count
        self._seen: FileIdentity | bool = False  # False: never looked

    def poll(self) -> bool:
        """Look once; True when the file changed (and was applied). Cheap when nothing changed: one stat."""
        identity = file_identity(self.path)
        if identity == self._seen:
            return False
        self._seen = identity
        config, outcome, detail = read_mirror_config(self.path)
        self._apply(config)
        self._count(outcome)
        if outcome is MirrorConfigOutcome.ON:
            log.info("mirroring on: %g%% of answered requests to %s (version %s), from %s", config.percent,
                     config.target, config.version, detail)
        elif outcome is MirrorConfigOutcome.OFF:
            log.info("mirroring off (percent 0 in %s)", detail)
        else:
            log.warning("mirroring off: mirror configuration %s: %s", outcome.value, detail)
        return True
