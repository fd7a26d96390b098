"""Command line of the local cluster.

    python -m localcluster up [--state-dir .local/cluster]     # start in the background
    python -m localcluster exec -- kubectl get pods -A         # run a command next to the pods
    python -m localcluster shell                               # a shell next to the pods
    python -m localcluster down                                # stop; nothing is left running
    python -m localcluster run --workdir D                     # foreground (inside the namespace)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from localcluster import netns
from localcluster.binaries import MissingBinaryError, bin_dir
from localcluster.cluster import LocalCluster, NotInNamespaceError

DEFAULT_STATE = Path(".local/cluster")


def cmd_run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    with LocalCluster(args.workdir.resolve()) as cluster:
        print(f"cluster ready in {time.monotonic() - started:.1f}s; kubeconfig {cluster.kubeconfig}", flush=True)
        while not stop.wait(1.0):
            cluster.check_alive()
    return 0


def _pid(state: Path) -> int | None:
    try:
        pid = int((state / "pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def cmd_up(args: argparse.Namespace) -> int:
    state: Path = args.state_dir.resolve()
    kubeconfig = state / "cluster/control-plane/kubeconfig"
    if _pid(state):
        print(f"local cluster already running (pid {_pid(state)}); kubeconfig {kubeconfig}")
        return 0
    bin_dir()
    # A fresh cluster each time: old etcd data would hold pods and tokens of a previous PKI.
    shutil.rmtree(state / "cluster", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    log = state / "cluster.log"
    argv = netns.unshare_argv([sys.executable, "-m", "localcluster", "run", "--workdir", str(state / "cluster")])
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (state / "pid").write_text(str(proc.pid))
    started = time.monotonic()
    while "cluster ready" not in log.read_text():
        if proc.poll() is not None or time.monotonic() - started > 120:
            print(f"local cluster failed to start; log: {log}\n{log.read_text()[-3000:]}", file=sys.stderr)
            cmd_down(args)
            return 1
        time.sleep(0.2)
    print(f"local cluster up in {time.monotonic() - started:.1f}s (pid {proc.pid})")
    print(f"  kubeconfig: {state / 'cluster/control-plane/kubeconfig'} (valid inside the cluster's namespace)")
    print("  run commands next to the pods:  make cluster-shell   or   hack/cluster-exec kubectl get pods -A")
    print("  stop it:                        make cluster-down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state: Path = args.state_dir.resolve()
    pid = _pid(state)
    if pid is None:
        print("local cluster is not running")
    else:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid(state) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if _pid(state):
            os.killpg(pid, signal.SIGKILL)  # the PID namespace takes every process with it
        print(f"local cluster stopped (pid {pid})")
    (state / "pid").unlink(missing_ok=True)
    return 0


def exec_argv(state: Path, command: list[str]) -> list[str]:
    pid = _pid(state.resolve())
    if pid is None:
        raise SystemExit("local cluster is not running: `make cluster-up` first")
    join = ["nsenter", "-t", str(pid), "-n"] if os.geteuid() == 0 else [
        "nsenter", "-t", str(pid), "-U", "-n", "--preserve-credentials"]
    return [*join, *command]


def cmd_exec(args: argparse.Namespace) -> int:
    state: Path = args.state_dir.resolve()
    env = dict(os.environ, KUBECONFIG=str(state / "cluster/control-plane/kubeconfig"),
               PATH=f"{bin_dir()}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    command = args.command or [os.environ.get("SHELL", "/bin/bash")]
    if command and command[0] == "--":
        command = command[1:]
    return subprocess.call(exec_argv(state, command), env=env)


def main() -> None:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run in the foreground (inside the cluster namespace)")
    run.add_argument("--workdir", type=Path, required=True)
    run.set_defaults(func=cmd_run)
    for name, func in (("up", cmd_up), ("down", cmd_down), ("exec", cmd_exec), ("shell", cmd_exec)):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
        if name in ("exec", "shell"):
            p.add_argument("command", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    args = parser.parse_args()
    try:
        sys.exit(args.func(args))
    except (MissingBinaryError, NotInNamespaceError) as exc:  # what to do next, not a traceback
        sys.exit(f"localcluster: {' '.join(str(exc).split())}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
