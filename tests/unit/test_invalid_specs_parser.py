"""The spec parser refuses every invalid ModelRollout the apiserver refuses (the e2e list in
tests/e2e/test_crd_validation.py), naming the same field: a resource that got past an older CRD
is still refused by the operator, never half-applied."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.core.spec import RolloutSpec
from tests.e2e.test_crd_validation import INVALID, INVALID_AB_TEST, INVALID_MONITORING, INVALID_SHADOW

pytestmark = pytest.mark.unit
# The parser sees only the spec.
SPEC_CASES = [c for c in INVALID + INVALID_SHADOW + INVALID_AB_TEST + INVALID_MONITORING
              if not c[2].startswith("metadata.")]


def field_path(expected: str) -> str:
    """The field part of what the apiserver is expected to name ("spec.x.y: message" -> "spec.x")."""
    return expected.split(":")[0].split("[")[0].rsplit(".", 1)[0] if expected.startswith("spec.") else "spec."


@pytest.mark.parametrize(("case", "body", "expected"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_the_parser_refuses_what_the_crd_refuses(case: str, body: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError) as raised:
        RolloutSpec.from_dict(body["spec"])
    assert field_path(expected) in str(raised.value), f"{case}: {raised.value}"


def test_the_list_is_long_enough() -> None:
    assert len(INVALID) >= 30
