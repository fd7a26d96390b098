"""Go-style duration strings ("500ms", "15s", "2m", "1h30m"), the format Kubernetes users know.

The one duration parser of the project: the rollout spec and the analysis config both use it, so a
value the CRD accepts means the same everywhere. A bare number such as `20` is refused (is it seconds
or minutes?); the CRD's pattern refuses it too.
"""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
# The same pattern is in the CRD, so the apiserver rejects what this module cannot parse.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


def parse_duration(text: object, field: str) -> float:
    """Seconds in `text`; ValueError naming `field` when it is not a duration.

    >>> parse_duration("1h30m", "x"), parse_duration("500ms", "x"), parse_duration("2.5s", "x")
    (5400.0, 0.5, 2.5)
    """
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{field}: {text!r} is not a duration such as 500ms, 15s, 2m or 1h30m")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """A short human form for messages.

    >>> format_duration(90), format_duration(5400), format_duration(0.5)
    ('1m30s', '1h30m', '0.5s')
    """
    if seconds < 1:
        return f"{seconds:g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
