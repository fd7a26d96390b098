"""`spec.notifications`: webhooks told about a rollout's Events (started, step, paused, promoted,
rolled back with the reason and numbers). Parsed here with the rest of the spec; delivered by
modelrollout.notify, outside the decision core, so a slow receiver never holds a tick.

    notifications:
      - name: team-channel
        urlFrom: {secretKeyRef: {name: slack-webhook, key: url}}
        format: slack            # or json (default)
        phases: [RolledBack, Paused]   # the Events of a tick that moved the rollout into these phases
        reasons: [Promoted]            # and Events with these reasons; neither: every Event
        timeout: 5s
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelrollout.analysis.sourceconfig import SecretKeyRef, _secret_ref
from modelrollout.core.phases import Phase
from modelrollout.durations import parse_duration

MAX_WEBHOOKS = 10
URL = re.compile(r"https?://[^\s/?#]+(/[^\s#]*)?")
NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
REASON = re.compile(r"[A-Z][A-Za-z]{0,63}")


class Format(StrEnum):
    JSON = "json"  # the event, the rollout and its numbers as one JSON object
    SLACK = "slack"  # {"text": ...}: Slack incoming webhooks and the many receivers that copy them


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str | None = None
    url_secret: SecretKeyRef | None = None
    format: Format = Format.JSON
    reasons: frozenset[str] = frozenset()
    phases: frozenset[str] = frozenset()  # with reasons empty too: every Event
    timeout_seconds: float = 5.0

    def wants(self, reason: str, entered: str | None) -> bool:
        """`entered`: the phase the tick moved the rollout into (None: the phase did not change)."""
        if not self.reasons and not self.phases:
            return True
        return reason in self.reasons or (entered is not None and entered in self.phases)


def parse_notifications(raw: Any, where: str = "spec.notifications") -> tuple[Webhook, ...]:
    """ValueError names the first bad field, as admission does."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_WEBHOOKS:
        raise ValueError(f"{where}: a list of at most {MAX_WEBHOOKS} webhooks")
    hooks = tuple(_webhook(item, f"{where}[{i}]") for i, item in enumerate(raw))
    names = [h.name for h in hooks]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: webhook names must be unique, got {names}")
    return hooks


def _webhook(raw: Any, where: str) -> Webhook:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: an object with name and url or urlFrom")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{where}.name: a DNS label (lower case, digits, '-'), got {name!r}")
    url, url_from = raw.get("url"), raw.get("urlFrom")
    if (url is None) == (url_from is None):
        raise ValueError(f"{where}: exactly one of url and urlFrom")
    if url is not None and (not isinstance(url, str) or not URL.fullmatch(url)):
        raise ValueError(f"{where}.url: an http:// or https:// URL, got {url!r}")
    secret = None
    if url_from is not None:
        if not isinstance(url_from, Mapping) or "secretKeyRef" not in url_from:
            raise ValueError(f"{where}.urlFrom: expected {{secretKeyRef: {{name, key}}}}")
        secret = _secret_ref(url_from["secretKeyRef"], f"{where}.urlFrom.secretKeyRef")
    fmt = raw.get("format", Webhook.format.value)
    if fmt not in {f.value for f in Format}:
        raise ValueError(f"{where}.format: one of {', '.join(f.value for f in Format)}, got {fmt!r}")
    reasons = raw.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) and REASON.fullmatch(r) for r in reasons):
        raise ValueError(f"{where}.reasons: a list of Event reasons such as Promoted, got {reasons!r}")
    phases = raw.get("phases", [])
    if not isinstance(phases, list) or not all(p in {x.value for x in Phase} for p in phases):
        raise ValueError(f"{where}.phases: a list of phases ({', '.join(x.value for x in Phase)}), got {phases!r}")
    timeout = (parse_duration(raw["timeout"], f"{where}.timeout") if "timeout" in raw
               else Webhook.timeout_seconds)
    if not 0 < timeout <= 30:
        raise ValueError(f"{where}.timeout: between 0 and 30s, got {raw.get('timeout')!r}")
    return Webhook(name=name, url=url, url_secret=secret, format=Format(fmt), reasons=frozenset(reasons),
                   phases=frozenset(phases), timeout_seconds=timeout)
