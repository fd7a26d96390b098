"""Kubelet probes: httpGet, tcpSocket and exec, each answering True (success) or False."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp


def resolve_port(port: int | str, container: Mapping[str, Any]) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe port {port!r} is not a named port of container {container.get('name')}")


async def run_probe(
    probe: Mapping[str, Any],
    container: Mapping[str, Any],
    pod_ip: str,
    session: aiohttp.ClientSession,
    env: Mapping[str, str],
) -> bool:
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            host = spec.get("host") or pod_ip
            url = f"{spec.get('scheme', 'HTTP').lower()}://{host}:{resolve_port(spec['port'], container)}"
            url += spec.get("path", "/")
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout),
                                   ssl=False) as resp:
                await resp.read()
                return 200 <= resp.status < 400
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            port = resolve_port(spec["port"], container)
            _, writer = await asyncio.wait_for(asyncio.open_connection(spec.get("host") or pod_ip, port), timeout)
            writer.close()
            return True
        if "exec" in probe:
            proc = await asyncio.create_subprocess_exec(
                *probe["exec"]["command"], env=dict(env),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except TimeoutError:
                proc.kill()
                return False
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False
    return False
