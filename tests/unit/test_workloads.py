"""The pickle opt-in travels from spec.model.allowPickle to the serving pods, and only when asked for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelrollout.core import RolloutSpec
from modelrollout.core.change import model_record
from modelrollout.core.status import ModelRecord
from modelrollout.workloads import serving_container

from .core.builders import spec_dict

pytestmark = pytest.mark.unit
DIGEST = "sha256:" + "a" * 64


def _env(model: dict[str, Any]) -> dict[str, str]:
    spec = spec_dict(model={"name": "fraud", "version": "2", "uri": "http://store/m.joblib", **model})
    typed = RolloutSpec.from_dict(spec)
    return {e["name"]: e["value"] for e in serving_container(typed, model_record(typed.model))["env"]}


def test_allow_pickle_reaches_the_server_only_when_the_spec_opts_in() -> None:
    assert _env({"digest": DIGEST, "allowPickle": True})["MODEL_ALLOW_PICKLE"] == "true"
    assert "MODEL_ALLOW_PICKLE" not in _env({"digest": DIGEST})
    assert "MODEL_ALLOW_PICKLE" not in _env({"digest": DIGEST, "allowPickle": False})


@pytest.mark.parametrize("model", [{"allowPickle": True}, {"digest": DIGEST, "allowPickle": "yes"}])
def test_allow_pickle_needs_a_boolean_and_a_digest(model: dict[str, Any]) -> None:
    spec = spec_dict(model={"name": "fraud", "version": "2", "uri": "http://store/m.joblib", **model})
    with pytest.raises(ValueError, match=r"^spec\.model\.allowPickle: "):
        RolloutSpec.from_dict(spec)


def test_the_opt_in_is_kept_with_the_version_for_rebuilds_and_undo() -> None:
    record = ModelRecord("2", "http://store/m.joblib", DIGEST, "joblib", allow_pickle=True)
    stored = json.loads(json.dumps(record.to_dict()))
    assert stored["allowPickle"] is True and ModelRecord.from_dict(stored) == record
    assert "allowPickle" not in ModelRecord("1", "u").to_dict()  # records of skops versions stay as they were


def test_the_drift_reference_digest_reaches_the_server_and_stays_with_the_version() -> None:
    other = "sha256:" + "b" * 64
    assert _env({"digest": DIGEST, "driftReferenceDigest": other})["MODELSERVER_DRIFT_REFERENCE_DIGEST"] == other
    assert "MODELSERVER_DRIFT_REFERENCE_DIGEST" not in _env({"digest": DIGEST})
    record = model_record(RolloutSpec.from_dict(spec_dict(model={
        "name": "fraud", "version": "2", "uri": "http://s/m.joblib", "driftReferenceDigest": other})).model)
    assert ModelRecord.from_dict(record.to_dict()) == record and record.drift_reference_digest == other
