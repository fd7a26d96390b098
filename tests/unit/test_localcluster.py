"""Pure parts of the local cluster: binary lookup, image registry, endpoint selection, env."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcluster import binaries, images
from localcluster.kubelet import fits_node
from localcluster.podenv import expand
from localcluster.proxy import ready_endpoints

pytestmark = pytest.mark.unit


def test_missing_binaries_name_the_folder_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROLLOUT_CACHE", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    with pytest.raises(binaries.MissingBinaryError, match=r"make k8s-bins.*KUBEBUILDER_ASSETS"):
        binaries.bin_dir()


def test_kubebuilder_assets_wins_when_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in binaries.REQUIRED:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert binaries.bin_dir() == tmp_path


@pytest.mark.parametrize(("image", "repo"), [
    ("ghcr.io/modelrollout/modelserver:0.1.0", "modelrollout/modelserver"),
    ("modelrollout/operator", "modelrollout/operator"),
    ("localhost:5000/localcluster/python:test", "localcluster/python"),
    ("modelrollout/modelserver@sha256:abc", "modelrollout/modelserver"),
])
def test_repository_drops_host_tag_and_digest(image: str, repo: str) -> None:
    assert images.repository(image) == repo


def test_command_and_args_replace_entrypoint_and_defaults() -> None:
    entry = images.resolve("localcluster/python:1").entrypoint
    assert images.command_line("localcluster/python:1", None, ["-m", "x"]) == [*entry, "-m", "x"]
    assert images.command_line("localcluster/python:1", ["sh", "-c"], ["true"]) == ["sh", "-c", "true"]
    with pytest.raises(images.UnknownImageError, match="not in the local cluster's image registry"):
        images.resolve("nginx:1.27")


def test_only_ready_endpoints_of_the_named_port_are_used() -> None:
    slices = {"s1": {
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.244.1.1"], "conditions": {"ready": True}},
            {"addresses": ["10.244.1.2"], "conditions": {"ready": False, "terminating": True}},
            {"addresses": ["10.244.1.3"], "conditions": {}},
        ],
    }, "s2": {"ports": [{"name": "metrics", "port": 9090}], "endpoints": [{"addresses": ["10.244.1.4"]}]}}
    assert ready_endpoints(slices, "http", "http") == [("10.244.1.1", 8080), ("10.244.1.3", 8080)]


def test_dollar_references_expand_like_kubernetes() -> None:
    assert expand("--bind $(POD_IP) $(MISSING)", {"POD_IP": "10.244.1.7"}) == "--bind 10.244.1.7 $(MISSING)"


@pytest.mark.parametrize(("selector", "fits"), [
    (None, True), ({"kubernetes.io/os": "linux"}, True),
    ({"kubernetes.io/hostname": "localcluster-node", "kubernetes.io/arch": "amd64"}, True),
    ({"kubernetes.io/os": "windows"}, False), ({"gpu": "a100"}, False),
])
def test_a_pod_is_bound_only_if_its_node_selector_matches_the_node(selector: dict[str, str] | None,
                                                                   fits: bool) -> None:
    assert fits_node({"spec": {"nodeSelector": selector}}) is fits
