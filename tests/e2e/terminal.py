"""A program run the way a person runs it: on a pseudo-terminal of a given size, read through a
screen emulator (pyte), so tests assert on what would be on the screen, not on a log.

    with Terminal(argv, cols=160, rows=50) as term:
        term.wait_for(lambda t: "PROMOTED" in t.text(), timeout=300)
        term.resize(80, 24)      # the kernel sends SIGWINCH, as a terminal window does
        term.press_ctrl_c()      # the line discipline sends SIGINT to the foreground process group
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from types import TracebackType

import pyte

ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _take_terminal() -> None:
    # Runs in the child after setsid(): make the pty (already on fd 0) its controlling terminal, so
    # Ctrl-C and window resizes reach it as they do in a real terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    def __init__(self, argv: list[str], cols: int, rows: int, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self._set_size(slave, cols, rows)
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.closed = False
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=_take_terminal, env={**os.environ, "TERM": "xterm", **(env or {})})
        os.close(slave)

    @staticmethod
    def _set_size(fd: int, cols: int, rows: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def pump(self, timeout: float) -> None:
        """Read what the program wrote within `timeout` seconds into the screen."""
        if self.closed:
            return
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the pty has closed it
            data = b""
        if not data:
            self.closed = True
            return
        self.raw += data
        self.stream.feed(data)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, predicate: Callable[[Terminal], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; screen:\n{self.text()}")
            if self.closed:  # nothing more will be written
                raise AssertionError(f"output ended (exit {self.proc.poll()}) before {what}; screen:\n{self.text()}")
            self.pump(0.5)

    def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"still writing after {timeout:.0f}s; screen:\n{self.text()}")
            self.pump(0.5)
        try:
            return self.proc.wait(max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"output closed but still running after {timeout:.0f}s") from None

    def resize(self, cols: int, rows: int) -> None:
        self._set_size(self.master, cols, rows)
        self.screen.resize(rows, cols)

    def press_ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        os.close(self.master)


def plain_lines(raw: bytes) -> list[str]:
    """The raw output as lines without escape codes or carriage returns (the tty turns LF into CR LF)."""
    return ESCAPE.sub(b"", raw).decode(errors="replace").replace("\r", "").split("\n")
