"""What one field manager applied to an object, read back from its `managedFields`.

Server-side apply removes every field that a manager stops sending, so a manager that wants to change
one field (a Deployment's replicas) must send again everything else it applied (the pod template it
created). This is client-go's `Extract<Kind>` for plain dicts: the fields recorded in the manager's
`Apply` entry, taken from the live object, and nothing another actor set.

>>> live = {"metadata": {"labels": {"app": "a", "team": "ml"}, "managedFields": [{
...     "manager": "modelrollout", "operation": "Apply",
...     "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}]}}
>>> applied_by(live, "modelrollout")
{'metadata': {'labels': {'app': 'a'}}}
"""

from __future__ import annotations

import json
from typing import Any


def applied_by(live: dict[str, Any], manager: str, subresource: str = "") -> dict[str, Any]:
    """The part of `live` that `manager` owns through server-side apply ({} if it applied nothing)."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if (entry.get("manager") == manager and entry.get("operation") == "Apply"
                and (entry.get("subresource") or "") == subresource):
            extracted = _extract(live, entry.get("fieldsV1") or {})
            return extracted if isinstance(extracted, dict) else {}
    return {}


def _is_leaf(fields: dict[str, Any]) -> bool:
    """A field owned as a whole: a scalar, an atomic map or list, or a granular one with no children."""
    return all(key == "." for key in fields)


def _extract(value: Any, fields: dict[str, Any]) -> Any:
    if _is_leaf(fields):
        return value
    if isinstance(value, dict):
        return {key[2:]: _extract(value[key[2:]], sub) for key, sub in fields.items()
                if key.startswith("f:") and key[2:] in value}
    if isinstance(value, list):
        return _extract_list(value, fields)
    return value


def _extract_list(items: list[Any], fields: dict[str, Any]) -> list[Any]:
    """Owned items in the live list's order (an env list reordered would restart every pod)."""
    keyed = [(json.loads(key[2:]), sub) for key, sub in fields.items() if key.startswith("k:")]
    values = [json.loads(key[2:]) for key in fields if key.startswith("v:")]
    indexed = {int(key[2:]): sub for key, sub in fields.items() if key.startswith("i:")}
    out: list[Any] = []
    for index, item in enumerate(items):
        if index in indexed:
            out.append(_extract(item, indexed[index]))
        elif item in values:
            out.append(item)
        else:
            match = next((sub for key, sub in keyed if isinstance(item, dict)
                          and all(item.get(k) == v for k, v in key.items())), None)
            if match is not None:
                # The key fields identify the item; they are always sent with it.
                out.append({**_key_fields(item, keyed), **_extract(item, match)})
    return out


def _key_fields(item: dict[str, Any], keyed: list[tuple[dict[str, Any], Any]]) -> dict[str, Any]:
    key = next(k for k, _ in keyed if all(item.get(name) == v for name, v in k.items()))
    return dict(key)
