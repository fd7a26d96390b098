"""One pod on the local node: prepare (IP, volumes, env), run its containers, report status like a
kubelet, and on deletion stop them within the grace period and remove the pod."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import urllib3

from localcluster import images
from localcluster.containers import TERMINATION_MESSAGE_PATH, Container, now_rfc3339, termination_log
from localcluster.controlplane import NODE_IP
from localcluster.dns import resolv_conf
from localcluster.podenv import Mount, PodConfigError, PodResources, base_env, expand, mounts_for

log = logging.getLogger(__name__)
TICK = 0.25
CONFIGMAP_SYNC_S = 3.0


class PodWorker:
    def __init__(self, api: kubernetes.client.ApiClient, pod: dict[str, Any], pod_ip: str, root: Path,
                 session: aiohttp.ClientSession) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.pod = pod
        self.ip = pod_ip
        self.root = root
        self.session = session
        self.containers: list[Container] = []
        self.wake = asyncio.Event()
        self.problem: tuple[str, str] | None = None  # (reason, message) before containers exist
        self._last_status: dict[str, Any] | None = None
        self._transitions: dict[str, tuple[str, str]] = {}
        self.start_time = now_rfc3339()
        self.done = False
        self._resources: PodResources | None = None
        self._folders: dict[str, Path] = {}
        self._synced_at = 0.0

    @property
    def key(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.wake.set()

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    async def run(self) -> None:
        try:
            await self._prepare()
            loop = asyncio.get_running_loop()
            while not self._deleting():
                now = loop.time()
                policy = self.pod["spec"].get("restartPolicy", "Always")
                for c in self.containers:
                    c.reap(policy, now)
                    await c.restart_if_due(now)
                await asyncio.gather(*(c.run_probes(self.ip, self.session, now) for c in self.containers))
                await self._sync_config_maps(now)
                await self._report()
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), TICK)
            await self._terminate()
        except Exception:
            log.exception("pod %s: worker failed", self.key)
        finally:
            # The kubelet gives this pod's IP to the next pod once the worker is done: a process left
            # running would keep the IP's ports and answer for that pod (a model store serving 404s).
            await self._kill_leftovers()
            self.done = True

    async def _sync_config_maps(self, now: float) -> None:
        """Every CONFIGMAP_SYNC_S, mounted ConfigMaps are updated in place (the real kubelet does so within its
        sync period plus its cache's TTL, about a minute by default; shorter here, for tests to wait less)."""
        if self._resources is None or now - self._synced_at < CONFIGMAP_SYNC_S:
            return
        self._synced_at = now
        try:
            changed = await asyncio.to_thread(self._resources.refresh_config_maps, self._folders)
        except (PodConfigError, kubernetes.client.ApiException, urllib3.exceptions.HTTPError) as exc:
            log.warning("pod %s: cannot refresh its ConfigMap volumes (%s); keeping the files", self.key, exc)
            return
        if changed:
            log.info("pod %s: updated ConfigMap volume(s) %s in place", self.key, ", ".join(changed))

    async def _kill_leftovers(self) -> None:
        for c in self.containers:
            with contextlib.suppress(Exception):
                await c.stop(0)

    async def _prepare(self) -> None:
        """Resolve images, env and volumes; wait (reporting why) until they can be resolved."""
        while not self._deleting():
            try:
                self.containers = await asyncio.to_thread(self._build_containers)
                self.problem = None
                break
            except images.UnknownImageError as exc:
                self.problem = ("ErrImagePull", str(exc))
            except PodConfigError as exc:
                self.problem = ("CreateContainerConfigError", str(exc))
            except kubernetes.client.ApiException as exc:
                self.problem = ("ContainerCreating", f"API error {exc.status}: {exc.reason}")
            except urllib3.exceptions.HTTPError as exc:
                self.problem = ("ContainerCreating", f"API unreachable: {exc}")
            await self._report()
            await asyncio.sleep(1.0)
        if self._deleting():
            return
        loop = asyncio.get_running_loop()
        for c in self.containers:
            await c.start(loop.time())

    def _build_containers(self) -> list[Container]:
        resources = PodResources(self.api, self.pod, self.ip)
        folders = resources.materialise_volumes(self.root / "volumes")
        self._resources, self._folders = resources, folders
        venv_bin = str(Path(sys.executable).parent)
        resolv = self.root / "resolv.conf"
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text(resolv_conf(self.pod["metadata"]["namespace"]))
        built = []
        for spec in self.pod["spec"]["containers"]:
            argv = images.command_line(spec.get("image", ""), spec.get("command"), spec.get("args"))
            env = base_env(self.ip, venv_bin)
            env.update(resources.env(spec))
            argv = [expand(a, env) for a in argv]
            termination = termination_log(self.root / "termination" / spec["name"])
            built.append(Container(
                spec=spec, argv=argv, env=env,
                mounts=[*mounts_for(spec, folders), Mount(resolv, "/etc/resolv.conf", read_only=True),
                        Mount(termination, spec.get("terminationMessagePath", TERMINATION_MESSAGE_PATH),
                              read_only=False)],
                log_path=self.root / "logs" / f"{spec['name']}.log", cwd=self.root / "containers" / spec["name"],
                termination_log=termination,
            ))
        return built

    async def _terminate(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await asyncio.gather(*(c.stop(float(grace)) for c in self.containers))
        await self._report()
        meta = self.pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            await asyncio.to_thread(self.core.delete_namespaced_pod, meta["name"], meta["namespace"], body=body)
        except kubernetes.client.ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _condition(self, kind: str, ok: bool) -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            self._transitions[kind] = (status, now_rfc3339())
        return {"type": kind, "status": status, "lastTransitionTime": self._transitions[kind][1]}

    def _phase(self) -> str:
        if not self.containers or any(c.started_at is None for c in self.containers):
            return "Pending"
        if all(c.terminated is not None for c in self.containers) and not self._deleting():
            return "Succeeded" if all(c.terminated and c.terminated["exitCode"] == 0
                                      for c in self.containers) else "Failed"
        return "Running"

    def status(self) -> dict[str, Any]:
        running = bool(self.containers) and all(c.is_running() for c in self.containers)
        ready = running and all(c.ready for c in self.containers) and not self._deleting()
        if self.containers:
            statuses = [c.status() for c in self.containers]
        else:
            reason, message = self.problem or ("ContainerCreating", "")
            statuses = [{"name": s["name"], "image": s.get("image", ""), "imageID": "", "ready": False,
                         "started": False, "restartCount": 0,
                         "state": {"waiting": {"reason": reason, "message": message}}}
                        for s in self.pod["spec"]["containers"]]
        return {
            "phase": self._phase(),
            "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
            "podIP": self.ip, "podIPs": [{"ip": self.ip}],
            "startTime": self.start_time,  # qosClass is set by the apiserver at creation and immutable
            "conditions": [
                self._condition("PodReadyToStartContainers", bool(self.containers)),
                self._condition("Initialized", True),
                self._condition("ContainersReady", ready),
                self._condition("Ready", ready),
                self._condition("PodScheduled", True),
            ],
            "containerStatuses": statuses,
        }

    async def _report(self) -> None:
        status = self.status()
        if status == self._last_status:
            return
        meta = self.pod["metadata"]
        try:
            await asyncio.to_thread(
                self.core.patch_namespaced_pod_status, meta["name"], meta["namespace"], {"status": status},
                _content_type="application/merge-patch+json",
            )
            self._last_status = status
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                log.warning("pod %s: status patch failed: %s %s", self.key, exc.reason, exc.body)
        except urllib3.exceptions.HTTPError as exc:  # the apiserver restarting: report again next tick
            log.warning("pod %s: status patch failed: %s", self.key, exc)
