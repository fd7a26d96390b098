"""What a kubelet gives a container besides its command: environment variables and volumes
materialised as files. Runs synchronous API calls: call it from a worker thread."""

from __future__ import annotations

import base64
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes

from localcluster.atomicwriter import write_payload
from localcluster.controlplane import APISERVER_PORT, NODE_IP

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class PodConfigError(RuntimeError):
    """A referenced ConfigMap/Secret/key is missing: the container waits (CreateContainerConfigError)."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def _field(pod: dict[str, Any], path: str, pod_ip: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": pod_ip,
        "status.hostIP": NODE_IP,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = (meta.get(path.split(".")[1]) or {}).items()
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items))
    raise PodConfigError(f"unsupported fieldRef {path}")


class PodResources:
    """Reads ConfigMaps, Secrets and service-account tokens for one pod."""

    def __init__(self, api: kubernetes.client.ApiClient, pod: dict[str, Any], pod_ip: str) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.pod = pod
        self.pod_ip = pod_ip
        self.ns = pod["metadata"]["namespace"]

    def _configmap(self, name: str, optional: bool = False) -> dict[str, str]:
        try:
            return self.core.read_namespaced_config_map(name, self.ns).data or {}
        except kubernetes.client.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise PodConfigError(f'configmap "{name}" not found') from None

    def _configmap_files(self, name: str, optional: bool = False) -> dict[str, str | bytes]:
        """A ConfigMap as volume files: `data` as text and `binaryData` (base64 in the API) as bytes."""
        try:
            found = self.core.read_namespaced_config_map(name, self.ns)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise PodConfigError(f'configmap "{name}" not found') from None
        binary = {k: base64.b64decode(v) for k, v in (found.binary_data or {}).items()}
        return {**(found.data or {}), **binary}

    def _secret(self, name: str, optional: bool = False) -> dict[str, bytes]:
        try:
            data = self.core.read_namespaced_secret(name, self.ns).data or {}
        except kubernetes.client.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise PodConfigError(f'secret "{name}" not found') from None
        return {k: base64.b64decode(v) for k, v in data.items()}

    def _key(self, data: dict[str, Any], ref: dict[str, Any], kind: str) -> str | None:
        if ref["key"] in data:
            value = data[ref["key"]]
            return value.decode() if isinstance(value, bytes) else value
        if ref.get("optional"):
            return None
        raise PodConfigError(f'{kind} "{ref["name"]}" has no key "{ref["key"]}"')

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's environment, in Kubernetes order: envFrom, then env (which wins)."""
        out: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = self._configmap(ref["name"], ref.get("optional", False))
                out.update({prefix + k: v for k, v in data.items()})
            if "secretRef" in source:
                ref = source["secretRef"]
                secret = self._secret(ref["name"], ref.get("optional", False))
                out.update({prefix + k: v.decode() for k, v in secret.items()})
        for var in container.get("env") or []:
            value = self._env_value(var, out)
            if value is not None:
                out[var["name"]] = value
        return out

    def _env_value(self, var: dict[str, Any], so_far: dict[str, str]) -> str | None:
        if "valueFrom" not in var:
            return expand(var.get("value", ""), so_far)
        source = var["valueFrom"]
        if "fieldRef" in source:
            return _field(self.pod, source["fieldRef"]["fieldPath"], self.pod_ip)
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return self._key(self._configmap(ref["name"], ref.get("optional", False)), ref, "configmap")
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return self._key(self._secret(ref["name"], ref.get("optional", False)), ref, "secret")
        if "resourceFieldRef" in source:
            return "0"
        raise PodConfigError(f"unsupported valueFrom for env {var['name']}")

    def materialise_volumes(self, root: Path) -> dict[str, Path]:
        """Write every volume of the pod under root/<volume name>; return name -> folder."""
        folders: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            if "persistentVolumeClaim" in volume:  # the volume's own folder, shared, never rewritten
                folders[volume["name"]] = self._claimed_folder(volume["persistentVolumeClaim"]["claimName"])
                continue
            folder = root / volume["name"]
            if folder.exists() and "emptyDir" not in volume:
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            self._fill(volume, folder)
            folders[volume["name"]] = folder
        return folders

    def _fill(self, volume: dict[str, Any], folder: Path) -> None:
        if "emptyDir" in volume:
            return
        if "configMap" in volume:
            src = volume["configMap"]
            files = self._configmap_files(src["name"], src.get("optional", False))
            write_payload(folder, _payload(files, src.get("items")))
        elif "secret" in volume:
            src = volume["secret"]
            secret = self._secret(src["secretName"], src.get("optional", False))
            write_payload(folder, _payload(secret, src.get("items")))
        elif "downwardAPI" in volume:
            self._downward(folder, volume["downwardAPI"].get("items") or [])
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                self._projected(folder, source)
        else:
            raise PodConfigError(f"volume {volume['name']}: only configMap, secret, emptyDir, downwardAPI, "
                                 "projected and persistentVolumeClaim volumes exist on the local node")

    def _claimed_folder(self, claim: str) -> Path:
        """The folder of the PersistentVolume bound to `claim`: the only node's disk, so a hostPath or
        local volume (bound by kube-controller-manager's binder, as on any cluster)."""
        try:
            pvc = self.core.read_namespaced_persistent_volume_claim(claim, self.ns)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                raise PodConfigError(f'persistentvolumeclaim "{claim}" not found') from None
            raise
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise PodConfigError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = self.core.read_persistent_volume(pvc.spec.volume_name).spec
        source = pv.host_path or pv.local
        if source is None or not Path(source.path).is_dir():
            raise PodConfigError(f'persistentvolume "{pvc.spec.volume_name}": only a hostPath or local volume '
                                 "whose folder exists can be mounted on the local node")
        return Path(source.path)

    def refresh_config_maps(self, folders: dict[str, Path]) -> list[str]:
        """Bring every configMap volume up to date, as the kubelet's periodic sync does: the files change in
        place (an atomic `..data` swap), the containers keep running. Returns the volumes that changed."""
        changed = []
        for volume in self.pod["spec"].get("volumes") or []:
            src = volume.get("configMap")
            folder = folders.get(volume["name"])
            if src is None or folder is None:
                continue
            files = self._configmap_files(src["name"], src.get("optional", False))
            if write_payload(folder, _payload(files, src.get("items"))):
                changed.append(volume["name"])
        return changed

    def _downward(self, folder: Path, items: list[dict[str, Any]]) -> None:
        for item in items:
            if "fieldRef" in item:
                _write_file(folder / item["path"], _field(self.pod, item["fieldRef"]["fieldPath"], self.pod_ip))

    def _projected(self, folder: Path, source: dict[str, Any]) -> None:
        if "serviceAccountToken" in source:
            src = source["serviceAccountToken"]
            _write_file(folder / src["path"], self.token(src.get("audience"), src.get("expirationSeconds", 3607)))
        elif "configMap" in source:
            src = source["configMap"]
            _write_items(folder, self._configmap(src["name"], src.get("optional", False)), src.get("items"))
        elif "secret" in source:
            src = source["secret"]
            _write_items(folder, self._secret(src["name"], src.get("optional", False)), src.get("items"))
        elif "downwardAPI" in source:
            self._downward(folder, source["downwardAPI"].get("items") or [])

    def token(self, audience: str | None, seconds: int) -> str:
        """A real bound token from the TokenRequest API, as the kubelet asks for it."""
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        meta = self.pod["metadata"]
        body = {
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": max(int(seconds), 600),
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]},
            }
        }
        result = self.core.create_namespaced_service_account_token(sa, self.ns, body)
        return str(result.status.token)


def _write_file(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content.encode() if isinstance(content, str) else content)
    os.replace(tmp, path)


def _payload(data: dict[str, Any], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    """A volume's files: every key, or only the listed items at their paths."""
    chosen = ({item["path"]: data[item["key"]] for item in items if item["key"] in data} if items
              else dict(data))
    return {path: value.encode() if isinstance(value, str) else value for path, value in chosen.items()}


def _write_items(folder: Path, data: dict[str, Any], items: list[dict[str, Any]] | None) -> None:
    if items:
        for item in items:
            if item["key"] in data:
                _write_file(folder / item["path"], data[item["key"]])
    else:
        for key, value in data.items():
            _write_file(folder / key, value)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion; unknown references stay as written."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def base_env(pod_ip: str, venv_bin: str) -> dict[str, str]:
    return {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "KUBERNETES_SERVICE_HOST": NODE_IP,
        "KUBERNETES_SERVICE_PORT": str(APISERVER_PORT),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(APISERVER_PORT),
        "PYTHONUNBUFFERED": "1",
        "POD_IP": pod_ip,
        # There is one network namespace for all pods: servers that honour HOST bind only their
        # own pod IP, so two pods can both listen on :8080.
        "HOST": pod_ip,
    }


def mounts_for(container: dict[str, Any], folders: dict[str, Path]) -> list[Mount]:
    result = []
    for vm in container.get("volumeMounts") or []:
        source = folders.get(vm["name"])
        if source is None:
            raise PodConfigError(f"volumeMount {vm['name']} names no volume of the pod")
        if vm.get("subPath"):
            source = source / vm["subPath"]
        result.append(Mount(source, vm["mountPath"], bool(vm.get("readOnly"))))
    return result
