"""Every `default:` in the CRD equals the Python default, so a spec means the same whether the
apiserver filled a field in or the operator did (unit tests and old CRDs skip the apiserver).

The check is behavioural: a minimal spec is parsed twice, once as written and once with the CRD's
defaults applied the way the apiserver applies them (only inside objects that are present), and
both must give the same RolloutSpec. The minimal specs contain every object that has defaulted
fields, and a count makes sure no `default:` of the schema went unexercised.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.core.spec import RolloutSpec

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CRD_FILES = [ROOT / "crds" / "modelrollout.dev_modelrollouts.yaml",
             ROOT / "charts" / "modelrollout" / "crds" / "modelrollout.dev_modelrollouts.yaml"]
METRIC = {"name": "errors", "type": "errorRate", "max": 0.01}
MODEL = {"name": "fraud", "version": "2", "uri": "http://store/fraud/2/model.joblib"}
MINIMAL_SPECS = {
    "canary": {"model": MODEL, "service": {"name": "fraud"}, "serving": {},
               "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
               "analysis": {"metrics": [METRIC], "timeout": {}},
               "validation": {"data": {"configMap": {"name": "holdout", "key": "holdout.csv"}}}},
    "blue-green": {"model": MODEL, "service": {"name": "fraud"}, "serving": {"metrics": {}},
                   "strategy": {"blueGreen": {"previewService": "fraud-preview"}},
                   "monitoring": {"drift": {}, "retrain": {"jobTemplate": {"spec": {"template": {"spec": {
                       "containers": [{"name": "train", "image": "trainer:1"}]}}}}}}},
    "ab-sticky": {"model": MODEL, "service": {"name": "fraud"}, "analysis": {"metrics": [METRIC]},
                  "strategy": {"abTest": {"goal": {"type": "outcome", "outcome": "revenue"}, "sticky": {}}},
                  "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}}},
    "gateway": {"model": MODEL, "service": {"name": "fraud"},
                "strategy": {"canary": {"steps": [{"setWeight": 5}]}},
                "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}}},
    "shadow": {"model": MODEL, "service": {"name": "fraud"},
               "strategy": {"canary": {"steps": [{"shadow": {"analysis": {"margin": 0.02}}}, {"setWeight": 50}]}}},
    "ab-test": {"model": MODEL, "service": {"name": "fraud"}, "strategy": {"abTest": {}},
                "analysis": {"metrics": [METRIC]}},
    "prometheus": {"model": MODEL, "service": {"name": "fraud"},
                   "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
                   "analysis": {"metrics": [METRIC], "source": "prometheus",
                                "prometheus": {"address": "http://prometheus:9090", "tls": {}}}},
}


def spec_schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def defaults_in(schema: dict[str, Any], prefix: str = "spec") -> Iterator[str]:
    """Paths of every property with a `default:`, e.g. spec.serving.port."""
    for name, sub in schema.get("properties", {}).items():
        if "default" in sub:
            yield f"{prefix}.{name}"
        yield from defaults_in(sub, f"{prefix}.{name}")
        yield from defaults_in(sub.get("items", {}), f"{prefix}.{name}[]")


def apply_defaults(value: Any, schema: dict[str, Any], prefix: str, applied: set[str]) -> None:
    """Fill in defaults as the apiserver does: for absent properties of objects that exist."""
    if isinstance(value, list):
        for item in value:
            apply_defaults(item, schema.get("items", {}), f"{prefix}[]", applied)
        return
    if not isinstance(value, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in value and "default" in sub:
            value[name] = copy.deepcopy(sub["default"])
            applied.add(f"{prefix}.{name}")
        if name in value:
            apply_defaults(value[name], sub, f"{prefix}.{name}", applied)


@pytest.mark.parametrize("crd", CRD_FILES, ids=["crds", "chart"])
def test_every_crd_default_equals_the_python_default(crd: Path) -> None:
    schema = spec_schema(crd)
    applied: set[str] = set()
    for name, minimal in MINIMAL_SPECS.items():
        defaulted = copy.deepcopy(minimal)
        apply_defaults(defaulted, schema, "spec", applied)
        assert RolloutSpec.from_dict(defaulted) == RolloutSpec.from_dict(minimal), name
    declared = set(defaults_in(schema))
    assert len(declared) >= 5
    assert applied == declared, f"add objects to MINIMAL_SPECS so these defaults are compared: {declared - applied}"


def test_a_changed_default_would_be_caught() -> None:
    schema = copy.deepcopy(spec_schema(CRD_FILES[0]))
    schema["properties"]["serving"]["properties"]["port"]["default"] = 9000
    defaulted = copy.deepcopy(MINIMAL_SPECS["canary"])
    apply_defaults(defaulted, schema, "spec", set())
    assert RolloutSpec.from_dict(defaulted) != RolloutSpec.from_dict(MINIMAL_SPECS["canary"])
