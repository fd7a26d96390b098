"""Cluster DNS for the local cluster (kube-dns's role, A records only).

Answers `<service>.<namespace>.svc.cluster.local` with the Service's cluster IP, from the service
proxy's watch. Pods get a resolv.conf pointing here with the usual search path, so
`http://model-store/...` works inside a pod's namespace as on any cluster. Everything else is
NXDOMAIN: the run's namespace has no outside network to forward to.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

DNS_IP = "10.96.0.10"
DOMAIN = "svc.cluster.local"
TTL = 5


def resolv_conf(namespace: str) -> str:
    return (f"nameserver {DNS_IP}\nsearch {namespace}.{DOMAIN} {DOMAIN} cluster.local\noptions ndots:5\n")


def parse_question(packet: bytes) -> tuple[int, str, int, int] | None:
    """(query id, name, qtype, end offset of the question) of a standard query, else None.

    >>> q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\\x01a\\x02ns\\x03svc\\x00" + b"\\x00\\x01\\x00\\x01"
    >>> parse_question(q)[:3]
    (7, 'a.ns.svc', 1)
    """
    if len(packet) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, offset = [], 12
    while offset < len(packet):
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length > 63 or offset + length > len(packet):
            return None
        labels.append(packet[offset:offset + length].decode("ascii", "replace").lower())
        offset += length
    if offset + 4 > len(packet):
        return None
    qtype, _qclass = struct.unpack("!HH", packet[offset:offset + 4])
    return qid, ".".join(labels), qtype, offset + 4


def answer(packet: bytes, lookup: Callable[[str], str | None]) -> bytes | None:
    """The response to one query: an A record for a known Service, else NXDOMAIN (or no data)."""
    parsed = parse_question(packet)
    if parsed is None:
        return None
    qid, name, qtype, end = parsed
    question = packet[12:end]
    ip = service_ip(name, lookup)
    if ip is None:
        return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
    if qtype != 1:  # the name exists, but we only have A records
        return struct.pack("!HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, TTL, 4) + bytes(int(p) for p in ip.split("."))
    return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + record


def service_ip(name: str, lookup: Callable[[str], str | None]) -> str | None:
    """`svc.ns.svc.cluster.local` -> lookup("ns/svc")."""
    suffix = "." + DOMAIN
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    return lookup(f"{parts[1]}/{parts[0]}") if len(parts) == 2 else None


class DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(data, self.lookup)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve(lookup: Callable[[str], str | None]) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: DnsProtocol(lookup), local_addr=(DNS_IP, 53))
    return transport
