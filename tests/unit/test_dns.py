"""The local cluster's DNS answers: A records for Services, NXDOMAIN otherwise."""

from __future__ import annotations

import struct

import pytest

from localcluster.dns import answer, resolv_conf

pytestmark = pytest.mark.unit
SERVICES = {"ml/model-store": "10.96.4.2"}


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", 42, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def test_service_name_gets_its_cluster_ip() -> None:
    reply = answer(_query("model-store.ml.svc.cluster.local"), SERVICES.get)
    assert reply is not None
    qid, flags, _, ancount = struct.unpack("!HHHH", reply[:8])
    assert (qid, flags & 0xF, ancount) == (42, 0, 1)
    assert reply[-4:] == bytes([10, 96, 4, 2])


@pytest.mark.parametrize("name", ["model-store.other.svc.cluster.local", "example.com", "model-store"])
def test_unknown_names_are_nxdomain(name: str) -> None:
    reply = answer(_query(name), SERVICES.get)
    assert reply is not None and struct.unpack("!H", reply[2:4])[0] & 0xF == 3


def test_aaaa_for_a_known_name_is_empty_not_nxdomain() -> None:
    reply = answer(_query("model-store.ml.svc.cluster.local", qtype=28), SERVICES.get)
    assert reply is not None
    assert struct.unpack("!H", reply[2:4])[0] & 0xF == 0 and struct.unpack("!H", reply[6:8])[0] == 0


def test_garbage_is_ignored() -> None:
    assert answer(b"\x00\x01", SERVICES.get) is None


def test_resolv_conf_searches_the_pods_namespace_first() -> None:
    assert "search ml.svc.cluster.local svc.cluster.local cluster.local" in resolv_conf("ml")
