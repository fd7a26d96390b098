"""Each model version gets a Deployment name of its own: valid, at most 63 characters, and never
shared with another version (names that were cut or lower-cased used to collide, and the stable
version was then scaled down as if it were the canary)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelrollout.workloads import deployment_name

pytestmark = pytest.mark.unit

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
VERSIONS = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?", fullmatch=True)  # the CRD's pattern
NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


@given(NAMES, VERSIONS)
def test_every_name_is_a_dns_label(rollout: str, version: str) -> None:
    assert DNS_LABEL.fullmatch(deployment_name(rollout, version))


@given(NAMES, VERSIONS, VERSIONS)
def test_two_versions_never_share_a_deployment(rollout: str, a: str, b: str) -> None:
    if a != b:
        assert deployment_name(rollout, a) != deployment_name(rollout, b)


@pytest.mark.parametrize(("rollout", "versions"), [
    ("f" * 63, ["1", "2"]),  # every version used to be cut away
    ("f" * 60, ["a1", "a2"]),  # versions sharing a first character
    ("fraud", ["rc1", "RC1"]),  # differing only in case
    ("fraud", ["2.1", "2-1", "2_1"]),  # differing only in punctuation
])
def test_the_collisions_found_in_the_field_are_gone(rollout: str, versions: list[str]) -> None:
    names = [deployment_name(rollout, v) for v in versions]
    assert len(set(names)) == len(names), names


def test_simple_versions_keep_their_readable_names() -> None:
    assert deployment_name("fraud", "2") == "fraud-v2"
    assert deployment_name("fraud", "2.1_b").startswith("fraud-v2-1-b-")


def test_a_version_that_looks_like_a_hashed_name_does_not_take_it() -> None:
    hashed = deployment_name("fraud", "2.1_b")
    lookalike = hashed.removeprefix("fraud-v")
    assert deployment_name("fraud", lookalike) != hashed
