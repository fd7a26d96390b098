"""The demo's live view: Events in every timestamp shape sort and render; the screen fits the terminal."""

from __future__ import annotations

import datetime as dt

import pytest
from kubernetes.client import CoreV1Event, V1ObjectMeta, V1ObjectReference

from localcluster.demoview import EPOCH, Snapshot, VersionRow, event_lines, frame, screen_lines

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 2, 10, 0, 0, tzinfo=dt.UTC)


def event(name: str, reason: str, *, first: dt.datetime | None = None, event_time: dt.datetime | None = None,
          last: dt.datetime | None = None, created: dt.datetime | None = None) -> CoreV1Event:
    return CoreV1Event(metadata=V1ObjectMeta(name=name, creation_timestamp=created),
                       involved_object=V1ObjectReference(name="fraud"), type="Normal", reason=reason,
                       message=f"{reason} happened", first_timestamp=first, event_time=event_time, last_timestamp=last)


def test_events_with_and_without_first_timestamp_sort_by_when_they_happened() -> None:
    # The mix that crashed `make demo`: firstTimestamp set on some, only eventTime on others.
    events = [
        event("e", "Promoted", first=T0 + dt.timedelta(seconds=40)),
        event("d", "OnlyEventTime", event_time=T0 + dt.timedelta(seconds=30)),
        event("c", "OnlyLast", last=T0 + dt.timedelta(seconds=20)),
        event("b", "OnlyCreated", created=T0 + dt.timedelta(seconds=10)),
        event("a", "NoTimestamp"),
        event("f", "NaiveFirst", first=dt.datetime(2026, 12, 2, 10, 0, 5)),  # no tzinfo: read as UTC
    ]
    lines = event_lines(events)
    assert [e.reason for e in lines] == ["NoTimestamp", "NaiveFirst", "OnlyCreated", "OnlyLast", "OnlyEventTime",
                                         "Promoted"]
    assert lines[0].at == EPOCH


def status(message: str = "canary at step 2 of 5 " * 8) -> dict[str, object]:
    verdict = {"name": "error-rate", "verdict": "Inconclusive", "message": "canary 1.2% vs stable 1.0% " * 6}
    return {"phase": "Progressing", "reason": "Analysing", "stableVersion": "1", "canaryVersion": "2",
            "desiredWeight": 25, "effectiveWeight": 24, "message": message,
            "analysis": {"results": [verdict, {**verdict, "name": "accuracy", "verdict": "Pass"}]}}


def snapshot(n_events: int = 12) -> Snapshot:
    events = event_lines([event(f"e{i}", f"Reason{i}", first=T0 + dt.timedelta(seconds=i)) for i in range(n_events)])
    rows = [VersionRow("1", 45.0, 0.0, 12.3, 0.912), VersionRow("2", 15.2, 0.01, 13.0, None)]
    return Snapshot(status(), rows, events, stage="version 2 rolling out on a 25% -> 50% -> 100% canary")


@pytest.mark.parametrize(("width", "height"), [(160, 50), (80, 24), (60, 20), (30, 10), (1, 1)])
def test_no_line_is_wider_than_the_terminal_and_the_screen_never_scrolls(width: int, height: int) -> None:
    lines = screen_lines(snapshot(), width, height)
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]


def test_at_80_columns_weights_versions_verdicts_and_newest_events_are_all_on_screen() -> None:
    screen = "\n".join(screen_lines(snapshot(), 80, 24))
    assert "desired 25% / effective 24%" in screen
    assert "req/s" in screen and "p99 ms" in screen and "accuracy" in screen and "91.2%" in screen
    assert "Inconclusive" in screen and "Pass" in screen
    assert "Reason11" in screen, "the newest event is shown"
    assert "Reason0 " not in screen, "older events give way when rows run out"


def test_a_wide_terminal_shows_the_header_on_one_line_and_every_event() -> None:
    lines = screen_lines(snapshot(n_events=5), 160, 50)
    assert "phase Progressing" in lines[1] and "effective 24%" in lines[1]
    assert all(f"Reason{i}" in "\n".join(lines) for i in range(5))


def test_a_short_terminal_drops_events_before_the_weights_and_versions() -> None:
    screen = "\n".join(screen_lines(snapshot(), 80, 14))
    assert "effective 24%" in screen and "req/s" in screen
    assert "events:" not in screen


def test_frame_redraws_in_place_without_a_trailing_newline() -> None:
    drawn = frame(["a", "b"])
    assert drawn.startswith("\x1b[H") and drawn.endswith("\x1b[J") and not drawn.endswith("\n\x1b[J")


@pytest.mark.parametrize(("effective", "shown"), [(24.637681159420289, "24.6%"), (50.0, "50%"), (None, "-")])
def test_the_measured_weight_is_shown_as_a_person_reads_it(effective: float | None, shown: str) -> None:
    snap = Snapshot({**status(), "effectiveWeight": effective})
    assert f"desired 25% / effective {shown}" in "\n".join(screen_lines(snap, 160, 50))
