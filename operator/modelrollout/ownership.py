"""Who owns a Service the operator would write, and what adopting and releasing one sends.

A Service belongs to at most one rollout, recorded by the label `modelrollout.dev/rollout` on it.
One the rollout created also carries its owner reference (garbage-collected with it). One that
existed before is adopted: its original selector is kept in an annotation and given back when the
rollout is deleted. Pure functions of the live object (a dict); `kube.py` reads and sends.
"""

from __future__ import annotations

import json
from typing import Any

from modelrollout.core.observations import LABEL_ROLLOUT

ORIGINAL_SELECTOR = "modelrollout.dev/original-selector"


class OwnershipConflictError(RuntimeError):
    """An object the operator would write belongs to something else; it is left untouched."""


def created_by(live: dict[str, Any], rollout: dict[str, Any]) -> bool:
    """Whether the rollout created this object (it holds the rollout's owner reference)."""
    uid = rollout["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in live["metadata"].get("ownerReferences") or [])


def check_owner(live: dict[str, Any], rollout: dict[str, Any]) -> None:
    """Raise OwnershipConflictError, naming the owner, when another rollout or controller owns the Service."""
    meta, name = live["metadata"], rollout["metadata"]["name"]
    where = f"Service {meta['namespace']}/{meta['name']}"
    owner = (meta.get("labels") or {}).get(LABEL_ROLLOUT)
    if owner is not None and owner != name:
        raise OwnershipConflictError(
            f"{where} belongs to ModelRollout {owner} (label {LABEL_ROLLOUT}={owner}); this rollout leaves it "
            f"alone: name another Service in spec.service.name or delete ModelRollout {owner}")
    controller = next((ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")), None)
    if controller is not None and controller.get("uid") != rollout["metadata"]["uid"]:
        raise OwnershipConflictError(
            f"{where} is controlled by {controller.get('kind')} {controller.get('name')} (its owner reference); "
            f"this rollout leaves it alone: name another Service in spec.service.name")


def adoption(live: dict[str, Any], rollout: dict[str, Any], selector: dict[str, str]) -> dict[str, Any]:
    """What the operator applies to a Service it did not create: its label, the original selector
    (recorded once, at the first adoption) and the router's selector. Ports stay the user's."""
    meta = live["metadata"]
    original = (meta.get("annotations") or {}).get(ORIGINAL_SELECTOR)
    if original is None:
        original = json.dumps(live["spec"].get("selector") or {}, sort_keys=True)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "labels": {LABEL_ROLLOUT: rollout["metadata"]["name"]},
                     "annotations": {ORIGINAL_SELECTOR: original}},
        "spec": {"selector": selector},
    }


def release(live: dict[str, Any], rollout: dict[str, Any]) -> dict[str, Any] | None:
    """What gives an adopted Service back (its original selector only, so the label and annotation
    the operator applied are removed); None for a Service the rollout created or never adopted."""
    meta = live["metadata"]
    original = (meta.get("annotations") or {}).get(ORIGINAL_SELECTOR)
    if original is None or created_by(live, rollout):
        return None
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"selector": json.loads(original)}}
