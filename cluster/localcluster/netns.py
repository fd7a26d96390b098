"""The run's private network namespace.

Pods need non-loopback IPs (EndpointSlice validation rejects loopback), and no packet may leave
this machine. So the whole local cluster - control plane, node emulator, service proxy, pods and
the tests that talk to them - runs inside a network namespace the run creates, where the pod and
service ranges are routed to the loopback device. `unshare --pid --fork --kill-child` also puts
the run in its own PID namespace: when the run ends, the kernel ends every process in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from localcluster.controlplane import NODE_IP, POD_CIDR, SERVICE_CIDR

MARKER_ENV = "LOCALCLUSTER_NETNS"


def is_inside() -> bool:
    """True when this process runs in a namespace prepared by `unshare_argv` (routes checked)."""
    if os.environ.get(MARKER_ENV) != "1":
        return False
    out = subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True, text=True)
    return POD_CIDR in out.stdout


def setup_commands() -> str:
    return (
        "ip link set lo up && "
        f"ip route add local {POD_CIDR} dev lo && "
        f"ip route add local {SERVICE_CIDR} dev lo"
    )


def unshare_argv(command: list[str]) -> list[str]:
    """argv that runs `command` inside a fresh network + PID + mount namespace set up for the cluster."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"`{tool}` is required (util-linux / iproute2)")
    user_ns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    script = f'{setup_commands()} && export {MARKER_ENV}=1 && exec "$@"'
    return [
        "unshare", *user_ns, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
        "--propagation", "private", "sh", "-c", script, "localcluster-netns", *command,
    ]


__all__ = ["MARKER_ENV", "NODE_IP", "is_inside", "unshare_argv"]
