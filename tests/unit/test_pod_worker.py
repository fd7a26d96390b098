"""The local kubelet's pod worker: an apiserver that cannot be reached while a pod runs must not end
the worker, and a worker that ends for any reason leaves no process behind. A process left running
keeps the pod's IP and ports, and the kubelet hands that IP to the next pod: one full test run saw a
model store's address answered by an earlier test's model server (404 for every model file)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import urllib3

from localcluster.containers import Container
from localcluster.pods import PodWorker

pytestmark = pytest.mark.unit


class FlakyCore:
    """patch_namespaced_pod_status fails as an unreachable apiserver does, `failures` times."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or urllib3.exceptions.MaxRetryError(None, "/api/v1/pods", ConnectionRefusedError())  # type: ignore[arg-type]
        self.patches: list[dict[str, Any]] = []

    def patch_namespaced_pod_status(self, _name: str, _ns: str, body: dict[str, Any], **_kw: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.patches.append(body)

    def delete_namespaced_pod(self, *_a: Any, **_kw: Any) -> None:
        pass


def pod() -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "p", "uid": "u-1"},
            "spec": {"containers": [{"name": "main", "image": "x"}], "terminationGracePeriodSeconds": 1}}


def worker(tmp_path: Path, core: FlakyCore) -> PodWorker:
    w = PodWorker(api=None, pod=pod(), pod_ip="10.244.1.9", root=tmp_path, session=None)  # type: ignore[arg-type]
    w.core = core

    async def prepare() -> None:
        w.containers = [Container(spec={"name": "main"}, argv=["sleep", "60"], env=dict(os.environ), mounts=[],
                                  log_path=tmp_path / "main.log", cwd=tmp_path / "main")]
        await w.containers[0].start(asyncio.get_running_loop().time())

    w._prepare = prepare  # type: ignore[method-assign]
    return w


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def running_pid(w: PodWorker) -> int:
    for _ in range(100):
        if w.containers and w.containers[0].proc is not None:
            return w.containers[0].proc.pid
        await asyncio.sleep(0.05)
    raise AssertionError("the container never started")


def test_an_unreachable_apiserver_does_not_end_the_worker(tmp_path: Path) -> None:
    async def scenario() -> None:
        core = FlakyCore(failures=3)
        w = worker(tmp_path, core)
        task = asyncio.ensure_future(w.run())
        pid = await running_pid(w)
        for _ in range(100):
            if core.patches:
                break
            await asyncio.sleep(0.05)
        assert core.patches, "the status was never reported once the apiserver answered"
        assert not task.done() and alive(pid)
        w.update({**w.pod, "metadata": {**w.pod["metadata"], "deletionTimestamp": "now"}})
        await asyncio.wait_for(task, 10)
        assert not alive(pid)

    asyncio.run(scenario())


def test_a_worker_that_fails_leaves_no_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = worker(tmp_path, FlakyCore(failures=1, error=RuntimeError("a bug in the worker")))
        task = asyncio.ensure_future(w.run())
        pid = await running_pid(w)
        await asyncio.wait_for(task, 10)
        assert w.done
        await asyncio.sleep(0.1)  # the reaper of the killed child
        assert not alive(pid), "a failed worker left its container running on an IP the kubelet reuses"

    asyncio.run(scenario())


def test_the_kubelet_reads_which_addresses_are_listened_on() -> None:
    import socket

    from localcluster.kubelet import listening_addresses

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert "127.0.0.1" in listening_addresses()


def test_an_ip_still_listened_on_is_not_given_to_a_new_pod() -> None:
    from localcluster.kubelet import IpPool

    busy = {"10.244.1.1"}
    pool = IpPool(listening=lambda: busy)
    assert pool.take() == "10.244.1.2"  # .1 is still held by a leftover process
    busy.clear()
    taken = {pool.take() for _ in range(253)}  # the rest of the /24
    assert "10.244.1.1" in taken  # once free, it is used again
    with pytest.raises(RuntimeError, match="no free pod IP"):
        pool.take()
