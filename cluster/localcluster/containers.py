"""One container of a pod as a local process: start (in a private mount namespace when it has
volume mounts), restart with back-off, probes, stop with a grace period, and its status entry."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from localcluster.podenv import Mount
from localcluster.probes import run_probe
from localcluster.procs import _die_with_parent

# Shorter than the kubelet's 10s..300s so crash-loop tests finish in seconds; same doubling shape.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 20.0
# As the kubelet: a file the container may write its last words to, bound at terminationMessagePath, and
# read into state.terminated.message (at most 4096 bytes) when the container exits.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_BYTES = 4096
FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES = 2048, 80  # FallbackToLogsOnError: the log's tail, as the kubelet


def termination_log(path: Path) -> Path:
    """An empty host file for one container's termination message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mount_wrapper(mounts: list[Mount], argv: list[str]) -> list[str]:
    """Bind each volume at its mountPath in a mount namespace of the container's own, so every pod
    sees e.g. its own /var/run/secrets/kubernetes.io/serviceaccount, as in-cluster clients expect."""
    if not mounts:
        return argv
    steps = ["set -e"]
    for m in _mount_order(mounts):
        src, dst = shlex.quote(str(m.source)), shlex.quote(m.target)
        steps.append(f"test -e {dst} || touch {dst}" if m.source.is_file() else f"mkdir -p {dst}")
        steps.append(f"mount --bind {src} {dst}")
        if m.read_only:
            steps.append(f"mount -o remount,bind,ro {dst}")
    steps.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "; ".join(steps), "container", *argv]


def _mount_order(mounts: list[Mount]) -> list[Mount]:
    """Mount first what hides no other mount's source: a volume mounted at /tmp would otherwise
    cover the kubelet's volume folders under /tmp before they are bound."""
    def shadows(m: Mount) -> bool:
        target = m.target.rstrip("/") + "/"
        return any(str(other.source).startswith(target) for other in mounts if other is not m)

    return sorted(mounts, key=lambda m: (shadows(m), len(m.target)))


@dataclass
class ProbeState:
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0


@dataclass
class Container:
    spec: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    log_path: Path
    cwd: Path
    proc: asyncio.subprocess.Process | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    last_terminated: dict[str, Any] | None = None
    terminated: dict[str, Any] | None = None
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    ready: bool = False
    restart_at: float | None = None
    readiness: ProbeState = field(default_factory=ProbeState)
    liveness: ProbeState = field(default_factory=ProbeState)
    stopping: bool = False
    termination_log: Path | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, loop_time: float) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        if self.termination_log is not None:
            self.termination_log.write_bytes(b"")  # each run of the container has its own last words
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {now_rfc3339()}: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *_mount_wrapper(self.mounts, self.argv),
                stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env=self.env, cwd=str(self.cwd), start_new_session=True, preexec_fn=_die_with_parent,
            )
        self.started_at, self.started_mono = now_rfc3339(), loop_time
        self.waiting, self.terminated, self.ready = None, None, False
        self.readiness = ProbeState(next_at=loop_time + self._initial_delay("readinessProbe"))
        self.liveness = ProbeState(next_at=loop_time + self._initial_delay("livenessProbe"))

    def _initial_delay(self, kind: str) -> float:
        return float(self._probe(kind).get("initialDelaySeconds", 0))

    def _probe(self, kind: str) -> dict[str, Any]:
        return dict(self.spec.get(kind) or {})

    def reap(self, restart_policy: str, loop_time: float) -> None:
        """Record an exit; schedule a restart as the policy says."""
        if self.proc is None or self.proc.returncode is None:
            return
        code = self.proc.returncode
        record = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at, "finishedAt": now_rfc3339(),
        }
        message = self._termination_message(code)
        if message:
            record["message"] = message
        self.proc, self.ready = None, False
        if self.stopping:
            self.terminated = record
            return
        if restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0):
            self.last_terminated = record
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(self.restart_count, 6))
            if loop_time - self.started_mono > 60:
                delay = BACKOFF_BASE  # ran long enough: the back-off starts over
            self.restart_at = loop_time + delay
            self.waiting = ("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container {self.name}")
        else:
            self.terminated = record

    def _termination_message(self, code: int) -> str:
        written = b""
        if self.termination_log is not None and self.termination_log.is_file():
            written = self.termination_log.read_bytes()[:TERMINATION_MESSAGE_BYTES]
        if not written and code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(OSError):
                tail = self.log_path.read_bytes()[-FALLBACK_LOG_BYTES * 4:].splitlines()[-FALLBACK_LOG_LINES:]
                written = b"\n".join(tail)[-FALLBACK_LOG_BYTES:]
        return written.decode("utf-8", errors="replace")

    async def restart_if_due(self, loop_time: float) -> None:
        if self.restart_at is not None and loop_time >= self.restart_at and not self.stopping:
            self.restart_at = None
            self.restart_count += 1
            await self.start(loop_time)

    async def run_probes(self, pod_ip: str, session: aiohttp.ClientSession, loop_time: float) -> None:
        if not self.is_running():
            return
        await self._readiness(pod_ip, session, loop_time)
        await self._liveness(pod_ip, session, loop_time)

    async def _readiness(self, pod_ip: str, session: aiohttp.ClientSession, loop_time: float) -> None:
        probe = self._probe("readinessProbe")
        if not probe:
            self.ready = True
            return
        state = self.readiness
        if loop_time < state.next_at:
            return
        state.next_at = loop_time + float(probe.get("periodSeconds", 10))
        if await run_probe(probe, self.spec, pod_ip, session, self.env):
            state.successes, state.failures = state.successes + 1, 0
            if state.successes >= int(probe.get("successThreshold", 1)):
                self.ready = True
        else:
            state.successes, state.failures = 0, state.failures + 1
            if state.failures >= int(probe.get("failureThreshold", 3)):
                self.ready = False

    async def _liveness(self, pod_ip: str, session: aiohttp.ClientSession, loop_time: float) -> None:
        probe = self._probe("livenessProbe")
        state = self.liveness
        if not probe or loop_time < state.next_at:
            return
        state.next_at = loop_time + float(probe.get("periodSeconds", 10))
        if await run_probe(probe, self.spec, pod_ip, session, self.env):
            state.failures = 0
            return
        state.failures += 1
        if state.failures >= int(probe.get("failureThreshold", 3)):
            # Like the kubelet: kill it; the restart policy brings it back.
            await self.signal_and_wait(float(probe.get("terminationGracePeriodSeconds", 2)))

    async def signal_and_wait(self, grace: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        _killpg(proc.pid, signal.SIGKILL)  # leftovers of the group

    async def stop(self, grace: float) -> None:
        self.stopping = True
        await self.signal_and_wait(grace)

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.is_running():
            state = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated}
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        out: dict[str, Any] = {
            "name": self.name, "image": self.spec.get("image", ""), "imageID": f"local://{self.spec.get('image')}",
            "ready": self.ready and self.is_running(), "started": self.is_running(),
            "restartCount": self.restart_count, "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.proc is not None:
            out["containerID"] = f"process://{self.proc.pid}"
        return out


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
