"""`make demo` as a person runs it: in a terminal (a pseudo-terminal read through a screen emulator),
160x50 and then resized to 80x24, and stopped with Ctrl-C. The `--plain` path has its own test
(test_demo.py); this one exercises the live view, which no log-based test ever sees."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.terminal import Terminal, plain_lines

pytestmark = pytest.mark.e2e

DEMO = [str(ROOT / "hack" / "in-netns"), sys.executable, "-m", "localcluster.demo"]
INTERRUPTED = "demo interrupted: the local cluster is stopped and nothing is left running"

# What the live view must show at some point; each is a pattern over the screen's lines.
FEATURES = {
    "versions table": re.compile(r"^\s*version\s+req/s\s+errors\s+p99 ms\s+accuracy$", re.M),
    "a version's rate/errors/p99/accuracy": re.compile(r"^\s+\d+\s+\d+\.\d\s+\d+\.\d%\s+\d+\.\d\s+\d+\.\d%$", re.M),
    "desired vs effective weight": re.compile(r"weight desired \d+% / effective \d+(\.\d)?%"),
    "a verdict with its numbers": re.compile(r"^\s+(Pass|Fail|Inconclusive)\s+[\w-]+: \S.*\d", re.M),
    "an operator event": re.compile(r"^events:\n\s+(Normal|Warning)\s+\w+", re.M),
}


class Seen:
    """Which features the screen has shown so far, checked on every read."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def update(self, term: Terminal) -> None:
        text = term.text()
        self.names |= {name for name, pattern in FEATURES.items() if pattern.search(text)}


def watch(seen: Seen, done: re.Pattern[str]) -> Callable[[Terminal], bool]:
    def check(term: Terminal) -> bool:
        seen.update(term)
        return bool(done.search(term.text()))
    return check


def stage(version: int) -> re.Pattern[str]:
    """The view's title (its first line) once `version` is rolling out."""
    return re.compile(rf"^ModelRollout demo/fraud: version {version} \(")


def frames_after(raw: bytes, offset: int, skip: int) -> list[str]:
    """Lines written after `offset`, from the `skip`+1-th redraw on (earlier ones may predate a resize)."""
    chunks = raw[offset:].split(b"\x1b[H")
    return plain_lines(b"\n".join(chunks[1 + skip:]))


def test_live_view_in_a_terminal_shows_the_rollouts_and_survives_a_resize_to_80_columns() -> None:
    seen_wide, seen_narrow = Seen(), Seen()
    with Terminal(DEMO, cols=160, rows=50) as term:
        term.wait_for(watch(seen_wide, stage(2)), 420, "version 2's canary")
        term.wait_for(watch(seen_wide, re.compile(r"weight desired [1-9]\d*% / effective [1-9]")), 180,
                      "version 2 receiving traffic")
        # The first verdict comes an analysis interval after the canary takes traffic: see it wide too.
        term.wait_for(watch(seen_wide, FEATURES["a verdict with its numbers"]), 120, "a verdict at 160x50")
        resized_at = len(term.raw)
        term.resize(80, 24)
        term.wait_for(watch(seen_narrow, stage(3)), 300, "version 3's canary")
        term.wait_for(watch(seen_narrow, re.compile(r"=== summary ===")), 300, "the summary")
        code = term.wait_exit(120)
        final = term.text()
        narrow_lines = frames_after(bytes(term.raw), resized_at, skip=2)
    assert code == 0, final
    assert "version 2 (good): PROMOTED" in final and "version 3 (bad):  ROLLED BACK" in final, final
    assert seen_wide.names == set(FEATURES), f"never shown at 160x50: {set(FEATURES) - seen_wide.names}"
    shown_narrow = seen_narrow.names
    assert {"versions table", "desired vs effective weight", "a verdict with its numbers"} <= shown_narrow, \
        f"at 80x24 the view lost: {set(FEATURES) - shown_narrow}"
    too_wide = [line for line in narrow_lines if len(line) > 80]
    assert not too_wide, f"{len(too_wide)} lines wider than the 80-column terminal, e.g. {too_wide[:3]}"
    assert "Traceback" not in term.raw.decode(errors="replace")


def pid_namespaces_under(pid: int) -> set[str]:
    """PID namespaces of `pid`'s descendants that are not ours (the demo's private one)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    ours, found, todo = os.readlink("/proc/self/ns/pid"), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                found.add(os.readlink(f"/proc/{child}/ns/pid"))
            except OSError:
                continue
    return found - {ours}


def processes_in(namespaces: set[str]) -> list[str]:
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") in namespaces:
                left.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return left


def test_ctrl_c_stops_the_demo_cleanly_with_one_line_and_exit_130() -> None:
    with Terminal(DEMO, cols=80, rows=24) as term:
        term.wait_for(lambda t: t.text().startswith("ModelRollout demo/fraud"), 420, "the live view")
        namespaces = pid_namespaces_under(term.proc.pid)
        assert namespaces, "the demo runs in a PID namespace of its own"
        term.press_ctrl_c()
        code = term.wait_exit(120)
        raw = bytes(term.raw)
    workdir = re.search(rb"working directory (\S+)", raw)
    after_view = [line.strip() for line in plain_lines(raw.rsplit(b"\x1b[J", 1)[-1])]
    messages = [line for line in after_view if line and line != "^C"]
    assert code == 130, raw.decode(errors="replace")[-3000:]
    assert messages == [INTERRUPTED], after_view
    assert b"Traceback" not in raw
    assert workdir and not Path(workdir.group(1).decode()).exists(), "the working directory is removed"
    assert processes_in(namespaces) == [], "processes left running after Ctrl-C"
