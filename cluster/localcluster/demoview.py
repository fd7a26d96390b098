"""What `make demo` draws: a pure function from one snapshot to the lines of a screen of a given size.

    lines = screen_lines(snapshot, width=80, height=24)

Kept apart from the demo's I/O so that narrow and short terminals, and Events in every shape the
API serves (with or without firstTimestamp, eventTime, lastTimestamp), are tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import dataclass, field
from typing import Any

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TITLE = "ModelRollout demo/fraud"  # what is happening follows; it must fit 80 columns
MIN_WIDTH = 40  # below this, lines are still cut to the width, but nothing more is dropped


@dataclass(frozen=True)
class VersionRow:
    """Client-side figures for one model version, as the demo's traffic sees them."""

    version: str
    rate: float  # requests per second over the last few seconds
    error_rate: float
    p99_ms: float
    accuracy: float | None  # None until the version answered a request


@dataclass(frozen=True)
class EventLine:
    type: str
    reason: str
    message: str
    at: dt.datetime


@dataclass(frozen=True)
class Snapshot:
    status: dict[str, Any]
    versions: list[VersionRow] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    stage: str = ""  # what the demo is doing now, e.g. "version 3 (trained on shuffled labels) rolling out"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def event_time(event: Any) -> dt.datetime:
    """When an Event happened, whichever timestamp its writer set.

    core/v1 Events written through the events.k8s.io API carry only `eventTime` (firstTimestamp is
    None); older writers set firstTimestamp/lastTimestamp; the creation time is always there.
    Events with none of them sort first.
    """
    for value in (getattr(event, "first_timestamp", None), getattr(event, "event_time", None),
                  getattr(event, "last_timestamp", None),
                  getattr(getattr(event, "metadata", None), "creation_timestamp", None)):
        if isinstance(value, dt.datetime):
            return _aware(value)
    return EPOCH


def event_lines(events: list[Any]) -> list[EventLine]:
    """The API's Event objects as lines, oldest first (ties broken by name, for a stable order)."""
    ordered = sorted(events, key=lambda e: (event_time(e), getattr(e.metadata, "name", "") or ""))
    return [EventLine(e.type or "", e.reason or "", " ".join((e.message or "").split()), event_time(e))
            for e in ordered]


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: width - 3] + "..." if width > 3 else text[:width]


def _percent(value: Any) -> str:
    # effectiveWeight is a measured share (24.637...); one decimal is what a person can read.
    if isinstance(value, int | float):
        return f"{value:g}%" if float(value).is_integer() else f"{value:.1f}%"
    return "-"


def _head(st: dict[str, Any], width: int) -> list[str]:
    phase = f"phase {st.get('phase', '-')} ({st.get('reason', '')})"
    versions = f"stable v{st.get('stableVersion', '-')}  canary v{st.get('canaryVersion', '-')}"
    weight = f"weight desired {_percent(st.get('desiredWeight'))} / effective {_percent(st.get('effectiveWeight'))}"
    one_line = f"{phase}  {versions}  {weight}"
    if len(one_line) <= width:
        return [one_line]
    return [f"{phase}  {versions}", weight]


def _version_table(rows: list[VersionRow]) -> list[str]:
    lines = [f"{'version':>8} {'req/s':>7} {'errors':>7} {'p99 ms':>7} {'accuracy':>9}"]
    for r in rows:
        accuracy = "-" if r.accuracy is None else f"{r.accuracy:.1%}"
        lines.append(f"{r.version:>8} {r.rate:>7.1f} {r.error_rate:>7.1%} {r.p99_ms:>7.1f} {accuracy:>9}")
    return lines


def _verdicts(st: dict[str, Any]) -> list[str]:
    results = (st.get("analysis") or {}).get("results") or []
    return [f"  {r.get('verdict', '?'):<12} {r.get('name', '')}: {r.get('message', '')}" for r in results]


def screen_lines(snap: Snapshot, width: int, height: int) -> list[str]:
    """At most `height` lines, none longer than `width`.

    What a person needs most stays longest as the terminal shrinks: the phase and weights, then
    the versions table, then the verdicts, then as many of the newest events as fit.
    """
    width = max(width, 1)
    st = snap.status
    message = textwrap.wrap(f"message: {st.get('message', '')}", width=max(width, MIN_WIDTH))[:2]
    title = f"{TITLE}: {snap.stage}" if snap.stage else TITLE
    top = [title, *_head(st, max(width, MIN_WIDTH)), *message, "", *_version_table(snap.versions)]
    verdicts = ["", "analysis:", *_verdicts(st)]
    room = height - len(top) - len(verdicts)
    events = ["", "events:", *[f"  {e.type:<8} {e.reason:<16} {e.message}" for e in snap.events]]
    if room < 3:
        events = []
    elif len(events) > room:
        events = [*events[:2], *events[len(events) - (room - 2):]]
    lines = [*top, *verdicts, *events][: max(height, 1)]
    return [_fit(line, width) for line in lines]


def frame(lines: list[str]) -> str:
    """Escape codes that redraw the screen in place: home, each line cleared to its end, the rest erased.

    Redrawing over the old frame (instead of clearing first) avoids flicker; no line carries a
    newline past the last row, so the terminal never scrolls.
    """
    return "\x1b[H" + "\r\n".join(f"{line}\x1b[K" for line in lines) + "\x1b[J"
