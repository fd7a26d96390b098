"""`spec.analysis.source` and `spec.analysis.prometheus`: where the analysis reads its counts from.

`pods` (the default) scrapes the serving pods' /metrics itself. `prometheus` asks a Prometheus
server instead, with built-in queries over this project's model server metrics, or with the user's
own PromQL for any count. The sequential tests need *counts* per tick (requests and errors, latency
bucket counts, correct and incorrect feedback), so a user query must have a shape that returns one:

* a count: ``sum(increase(<selector>[{{interval}}]))``, optionally followed by ``or vector(0)``;
* latency bucket counts: ``sum by (le) (increase(<selector>[{{interval}}]))``;

where <selector> is a metric name and/or one ``{...}`` label matcher block, and the query names
``{{version}}`` (both versions would otherwise get the same numbers). ``{{namespace}}`` and
``{{interval}}`` are the other placeholders; no other ``{{...}}`` is accepted. The CRD's CEL rules
enforce the same regular expressions (a unit test checks they are these), so the apiserver refuses a
ratio, a rate or a quantile at admission, naming the field; this parser refuses them again for specs
that skipped the apiserver (unit tests, an older CRD).

>>> check_query("requests", 'sum(increase(http_requests_total{job="x",version="{{version}}"}[{{interval}}]))', "q")
>>> check_query("errors", 'sum(rate(errors_total{version="{{version}}"}[{{interval}}]))', "q")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: q: must have the shape sum(increase(<selector>[{{interval}}])) (optionally `or vector(0)`): counts, ...
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrollout.durations import parse_duration


class SourceName(enum.StrEnum):
    PODS = "pods"  # scrape the serving pods' /metrics directly (no Prometheus needed)
    PROMETHEUS = "prometheus"  # query a Prometheus server


class CountQuery(enum.StrEnum):
    """The counts of one version over one tick that a user query may provide (spec.analysis.prometheus.queries)."""

    REQUESTS = "requests"
    ERRORS = "errors"
    LATENCY_BUCKETS = "latencyBuckets"
    FEEDBACK_CORRECT = "feedbackCorrect"
    FEEDBACK_INCORRECT = "feedbackIncorrect"


PLACEHOLDERS = ("{{version}}", "{{namespace}}", "{{interval}}")
MAX_QUERY_LENGTH = 1024
# A metric name and/or one label matcher block whose quoted values may hold any character.
_SELECTOR = r'([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(\{([^}"]|"([^"\\]|\\.)*")*\})?'
_INCREASE = r'\s*increase\s*\(\s*' + _SELECTOR + r'\s*\[\{\{interval\}\}\]\s*\)\s*'
# These two strings are also the CEL rules' regular expressions in the CRD (RE2 and Python agree on them).
COUNT_SHAPE = r'^\s*sum\s*\(' + _INCREASE + r'\)(\s+or\s+vector\s*\(\s*0\s*\))?\s*$'
BUCKETS_SHAPE = r'^\s*sum\s+by\s*\(\s*le\s*\)\s*\(' + _INCREASE + r'\)\s*$'
_SHAPES = {
    CountQuery.LATENCY_BUCKETS: (BUCKETS_SHAPE, "sum by (le) (increase(<selector>[{{interval}}]))"),
}
_COUNT = (COUNT_SHAPE, "sum(increase(<selector>[{{interval}}])) (optionally `or vector(0)`)")
# Counts that only make sense together: an error rate needs its own requests, accuracy both outcomes.
PAIRS = ((CountQuery.ERRORS, CountQuery.REQUESTS), (CountQuery.FEEDBACK_CORRECT, CountQuery.FEEDBACK_INCORRECT))


def check_query(name: str, text: Any, where: str) -> None:
    """Raise ValueError naming `where` unless `text` is an accepted query for count `name`."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: must be a non-empty PromQL string")
    if len(text) > MAX_QUERY_LENGTH:
        raise ValueError(f"{where}: longer than {MAX_QUERY_LENGTH} characters")
    unknown = sorted(set(re.findall(r"\{\{[^{}]*\}\}", text)) - set(PLACEHOLDERS))
    if unknown or "{{" in re.sub(r"\{\{(version|namespace|interval)\}\}", "", text):
        raise ValueError(f"{where}: unknown placeholder {', '.join(unknown) or '{{'}; "
                         f"only {', '.join(PLACEHOLDERS)} are replaced")
    if "{{version}}" not in text:
        raise ValueError(f"{where}: must select one version with {{{{version}}}}, or both versions get the same counts")
    pattern, shape = _SHAPES.get(CountQuery(name), _COUNT)
    if not re.fullmatch(pattern, text, flags=re.DOTALL):
        raise ValueError(f"{where}: must have the shape {shape}: counts, not rates or ratios, "
                         "so the sequential tests apply")


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Secret in the rollout's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class PrometheusConfig:
    """Validated `spec.analysis.prometheus`; `queries` maps a CountQuery value to the user's PromQL."""

    address: str
    timeout_seconds: float = 5.0
    insecure_skip_verify: bool = False
    ca_secret: SecretKeyRef | None = None
    bearer_token_secret: SecretKeyRef | None = None
    queries: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def from_spec(raw: Any, where: str) -> PrometheusConfig:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: required with source prometheus, an object with at least address")
        address = raw.get("address")
        if not isinstance(address, str) or not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", address):
            raise ValueError(f"{where}.address: an http:// or https:// URL of the Prometheus server, got {address!r}")
        timeout = (parse_duration(raw["timeout"], f"{where}.timeout") if "timeout" in raw
                   else PrometheusConfig.timeout_seconds)
        if not 0 < timeout <= 60:
            raise ValueError(f"{where}.timeout: must be above 0 and at most 60s, got {raw.get('timeout')!r}")
        skip, ca = _tls(raw.get("tls"), f"{where}.tls")
        if ca is not None and not address.startswith("https://"):
            raise ValueError(f"{where}.tls.caSecret: only used with an https:// address")
        token = _secret_ref(raw.get("bearerTokenSecret"), f"{where}.bearerTokenSecret")
        return PrometheusConfig(address.rstrip("/"), timeout, skip, ca, token, _queries(raw.get("queries"), where))


def _tls(raw: Any, where: str) -> tuple[bool, SecretKeyRef | None]:
    if raw is None:
        return PrometheusConfig.insecure_skip_verify, None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected an object")
    skip = raw.get("insecureSkipVerify", PrometheusConfig.insecure_skip_verify)
    if not isinstance(skip, bool):
        raise ValueError(f"{where}.insecureSkipVerify: expected true or false, got {skip!r}")
    ca = _secret_ref(raw.get("caSecret"), f"{where}.caSecret")
    if skip and ca is not None:
        raise ValueError(f"{where}: set caSecret or insecureSkipVerify, not both")
    return skip, ca


def _secret_ref(raw: Any, where: str) -> SecretKeyRef | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected {{name: <secret>, key: <key>}}")
    name, key = raw.get("name"), raw.get("key")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
        raise ValueError(f"{where}.name: a Secret name in the rollout's namespace, got {name!r}")
    if not isinstance(key, str) or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        raise ValueError(f"{where}.key: a key of the Secret, got {key!r}")
    return SecretKeyRef(name, key)


def _queries(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}.queries: expected an object")
    allowed = {q.value for q in CountQuery}
    for name in raw:
        if name not in allowed:
            raise ValueError(f"{where}.queries.{name}: not a count the analysis reads "
                             f"(use {', '.join(sorted(allowed))})")
        check_query(name, raw[name], f"{where}.queries.{name}")
    for a, b in PAIRS:
        if (a.value in raw) != (b.value in raw):
            given, missing = (a, b) if a.value in raw else (b, a)
            raise ValueError(f"{where}.queries.{missing.value}: required with queries.{given.value} "
                             "(both counts must come from the same series)")
    return dict(raw)


def source_from_spec(spec: Mapping[str, Any], where: str) -> tuple[SourceName, PrometheusConfig | None]:
    """The `source` and, with source prometheus, its validated `prometheus` block."""
    try:
        source = SourceName(spec.get("source", SourceName.PODS.value))
    except ValueError:
        raise ValueError(f"{where}.source: must be pods or prometheus, got {spec.get('source')!r}") from None
    if source is SourceName.PODS:
        if "prometheus" in spec:
            raise ValueError(f"{where}.prometheus: only used with source: prometheus")
        return source, None
    return source, PrometheusConfig.from_spec(spec.get("prometheus"), f"{where}.prometheus")
