"""The ModelRollout spec as typed, frozen values, parsed from the dict the apiserver stores.

The CRD already validates most of this; parsing again here gives the core one typed shape and
a clear ValueError (naming the field) for anything that slips through, e.g. in unit tests or
on a cluster whose CRD is older than the operator.

`spec.analysis` is parsed by `modelrollout.analysis.config` (the only parser of that section):
`RolloutSpec.analysis` is the validated `AnalysisConfig` that the engine and the core both read.
Defaults live in the dataclasses below and nowhere else; a unit test checks they equal the CRD's.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.pairedconfig import PairedConfig
from modelrollout.core.abspec import ABTestStrategy, parse_ab_test
from modelrollout.core.monitoring import MonitoringSpec, parse_monitoring
from modelrollout.core.notifications import Webhook, parse_notifications
from modelrollout.core.observations import HeaderMatch
from modelrollout.core.servermetrics import check_analysis_fits
from modelrollout.core.serving import ServingSpec, parse_serving
from modelrollout.durations import parse_duration

DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
# A model version becomes a label value on pods, so it must be one.
VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
DNS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"  # the Gateway API's HTTPHeaderName
SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"  # a DNS-1035 label, as Services need


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    uri: str
    digest: str | None = None
    format: str | None = None
    features: tuple[str, ...] = ()
    allow_pickle: bool = False  # joblib files run code when loaded: the owner opts in explicitly
    drift_reference_digest: str | None = None  # of <model>.drift.json, checked by the server when given


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int = 80


@dataclass(frozen=True)
class ShadowStep:
    """A shadow stage (the first canary step): the candidate answers copies of `percent` of the requests the
    stable pods answered, on its own `replicas` pods that no user-facing Service selects, and is judged on the
    same requests (analysis/paired.py) every `interval_seconds`; without a Pass within `timeout_seconds` it is
    rolled back (missing data never passes)."""

    analysis: PairedConfig
    percent: int = 100
    replicas: int = 1
    interval_seconds: float = 30.0
    timeout_seconds: float = 1800.0


@dataclass(frozen=True)
class CanaryStep:
    """Exactly one of set_weight / pause / shadow. pause_seconds None with is_pause: wait for a promote."""

    set_weight: int | None = None
    is_pause: bool = False
    pause_seconds: float | None = None
    shadow: ShadowStep | None = None


@dataclass(frozen=True)
class CanaryStrategy:
    steps: tuple[CanaryStep, ...]
    # With a router that splits by weight (gatewayAPI) the canary's pods need not follow the weight:
    # None scales them by it (at least one), a number keeps at least that many while a canary runs.
    canary_replicas: int | None = None
    header_route: HeaderMatch | None = None  # requests with it go to the canary at every step
    outcome_names: tuple[str, ...] = ()  # numeric outcomes its pods must count: none (an A/B goal's only)

    @property
    def has_shadow(self) -> bool:
        return any(s.shadow is not None for s in self.steps)

    def shadow_at(self, index: int) -> ShadowStep | None:
        """The shadow step at `index`, if that step is one."""
        return self.steps[index].shadow if 0 <= index < len(self.steps) else None


@dataclass(frozen=True)
class TrafficRouting:
    """Which router realises the strategy's traffic (modelrollout.core.routers.ROUTERS), and its target.

    router: "replicas", "service" or "gatewayAPI"; http_route / namespace name the user's HTTPRoute
    (namespace None: the rollout's own) and are set only for gatewayAPI.
    """

    router: str
    http_route: str | None = None
    namespace: str | None = None
    # gatewayAPI: a version a new route stops sending traffic to keeps its pods this long after the
    # gateway accepted that route. A gateway applies an accepted route a moment later (Traefik batches
    # configuration changes for 2 s); a pod gone before that answers its last requests with 502.
    scale_down_delay_seconds: float = 30.0


@dataclass(frozen=True)
class BlueGreenStrategy:
    preview_service: str
    auto_promotion_seconds: float | None = None  # None: Paused until `kubectl modelrollout promote`
    scale_down_delay_seconds: float = 30.0
    has_shadow = False  # no shadow stage in a blue-green rollout
    outcome_names: tuple[str, ...] = ()  # numeric outcomes its pods must count: none (an A/B goal's only)

    def shadow_at(self, index: int) -> ShadowStep | None:
        return None


@dataclass(frozen=True)
class ValidationSpec:
    """spec.validation: the holdout (a ConfigMap key, or a URL with its sha256) and the checks a validation
    Job runs on it before the candidate takes any traffic. `checks` is handed to the Job as it is: the
    serving image's parser (modelserver.validation.config) is its one parser, the CRD its admission check."""

    config_map: str | None = None
    key: str | None = None
    url: str | None = None
    sha256: str | None = None
    checks: Mapping[str, Any] = field(default_factory=dict)
    timeout_seconds: int = 300  # the Job's activeDeadlineSeconds: bad data never hangs a rollout

    @property
    def data_file(self) -> str:
        """The holdout's file name, whose extension (.csv / .npz) says how to read it."""
        return self.key if self.key is not None else (self.url or "").rsplit("/", 1)[-1].split("?", 1)[0]


@dataclass(frozen=True)
class RolloutSpec:
    model: ModelSpec
    service: ServiceSpec
    strategy: CanaryStrategy | BlueGreenStrategy | ABTestStrategy
    replicas: int = 1
    serving: ServingSpec = field(default_factory=ServingSpec)
    analysis: AnalysisConfig | None = None  # None: no metrics, steps advance on pod readiness alone
    progress_deadline_seconds: float = 600.0
    traffic_routing: TrafficRouting | None = None  # None: the strategy's own router (strategies.py)
    notifications: tuple[Webhook, ...] = ()
    validation: ValidationSpec | None = None  # None: no validation gate
    monitoring: MonitoringSpec | None = None  # None: nothing watched after the rollout (core/monitoring.py)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> RolloutSpec:
        """Parse `spec`; ValueError names the first bad field ("spec.model.version: ...")."""
        replicas = _int(spec.get("replicas", cls.replicas), "spec.replicas", low=1)
        deadline = _int(spec.get("progressDeadlineSeconds", int(cls.progress_deadline_seconds)),
                        "spec.progressDeadlineSeconds", low=1)
        analysis = spec.get("analysis")
        service = _service(_mapping(spec.get("service"), "spec.service"))
        strategy = _strategy(_mapping(spec.get("strategy"), "spec.strategy"))
        routing = _routing(spec)
        if routing is not None and routing.router == "gatewayAPI" and len(service.name) > 56:
            raise ValueError("spec.service.name: at most 56 characters with spec.trafficRouting.gatewayAPI "
                             "(the canary Service is <name>-canary)")
        if getattr(strategy, "preview_service", None) == service.name:
            # As at admission: one Service patched to both versions served the unpromoted one.
            raise ValueError("spec.strategy.blueGreen.previewService: must differ from spec.service.name")
        model = _model(_mapping(spec.get("model"), "spec.model"))
        serving = parse_serving(_mapping(spec.get("serving", {}), "spec.serving"))
        parsed_analysis = None if analysis is None else AnalysisConfig.from_spec(_mapping(analysis, "spec.analysis"))
        check_analysis_fits(serving.metrics, parsed_analysis)  # as at admission: no metric silently unread
        if "abTest" in spec["strategy"]:
            check_ab_test_fits(serving, parsed_analysis)
        _check_shadow_fits(strategy, routing, serving, service)
        return cls(
            replicas=replicas,
            model=model,
            service=service,
            strategy=strategy,
            serving=serving,
            analysis=parsed_analysis,
            progress_deadline_seconds=float(deadline),
            traffic_routing=routing,
            notifications=parse_notifications(spec.get("notifications")),
            validation=None if spec.get("validation") is None else _validation(
                _mapping(spec["validation"], "spec.validation")),
            monitoring=parse_monitoring(spec.get("monitoring")),
        )


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: required, must be an object")
    return value


def _str(value: Any, name: str, pattern: str | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: required, must be a non-empty string")
    if pattern and not re.fullmatch(pattern, value):
        raise ValueError(f"{name}: {value!r} does not match {pattern}")
    return value


def _int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}: {value} is outside [{low}, {high if high is not None else 'inf'}]")
    return value


def _model(d: Mapping[str, Any]) -> ModelSpec:
    digest = d.get("digest")
    fmt = d.get("format")
    if fmt is not None and fmt not in ("joblib", "skops"):
        raise ValueError(f"spec.model.format: {fmt!r} must be joblib or skops")
    allow_pickle = d.get("allowPickle", False)
    if not isinstance(allow_pickle, bool):
        raise ValueError(f"spec.model.allowPickle: must be true or false, got {allow_pickle!r}")
    if allow_pickle and digest is None:
        raise ValueError("spec.model.allowPickle: needs spec.model.digest, the sha256 recorded at publishing")
    reference_digest = d.get("driftReferenceDigest")
    return ModelSpec(
        name=_str(d.get("name"), "spec.model.name"),
        version=_str(d.get("version"), "spec.model.version", VERSION_PATTERN),
        uri=_str(d.get("uri"), "spec.model.uri"),
        digest=None if digest is None else _str(digest, "spec.model.digest", DIGEST_PATTERN),
        format=fmt,
        features=tuple(str(f) for f in d.get("features") or ()),
        allow_pickle=allow_pickle,
        drift_reference_digest=None if reference_digest is None else _str(
            reference_digest, "spec.model.driftReferenceDigest", DIGEST_PATTERN),
    )


def _service(d: Mapping[str, Any]) -> ServiceSpec:
    return ServiceSpec(
        name=_str(d.get("name"), "spec.service.name", SERVICE_NAME_PATTERN),
        port=_int(d.get("port", ServiceSpec.port), "spec.service.port", low=1, high=65535),
    )


def _strategy(d: Mapping[str, Any]) -> CanaryStrategy | BlueGreenStrategy | ABTestStrategy:
    if sum(k in d for k in ("canary", "blueGreen", "abTest")) != 1:
        raise ValueError("spec.strategy: exactly one of canary, blueGreen or abTest must be set")
    if "abTest" in d:
        return parse_ab_test(_mapping(d["abTest"], "spec.strategy.abTest"))
    if "canary" in d:
        canary = _mapping(d["canary"], "spec.strategy.canary")
        steps = canary.get("steps") or []
        if not isinstance(steps, list) or not steps:
            raise ValueError("spec.strategy.canary.steps: needs at least one step")
        parsed = tuple(_step(s, f"spec.strategy.canary.steps[{i}]") for i, s in enumerate(steps))
        _check_rising(parsed)
        if any(s.shadow is not None for s in parsed[1:]):
            raise ValueError("spec.strategy.canary.steps: a shadow step must be the first step, and the only one")
        header = canary.get("headerRoute")
        extra = canary.get("canaryReplicas")
        return CanaryStrategy(
            steps=parsed,
            canary_replicas=None if extra is None else _int(extra, "spec.strategy.canary.canaryReplicas", low=1),
            header_route=None if header is None else _header_route(
                _mapping(header, "spec.strategy.canary.headerRoute")),
        )
    bg = _mapping(d["blueGreen"], "spec.strategy.blueGreen")
    where = "spec.strategy.blueGreen"
    auto = bg.get("autoPromotionSeconds")
    delay = bg.get("scaleDownDelaySeconds", int(BlueGreenStrategy.scale_down_delay_seconds))
    return BlueGreenStrategy(
        preview_service=_str(bg.get("previewService"), f"{where}.previewService", SERVICE_NAME_PATTERN),
        auto_promotion_seconds=None if auto is None else float(_int(auto, f"{where}.autoPromotionSeconds", low=0)),
        scale_down_delay_seconds=float(_int(delay, f"{where}.scaleDownDelaySeconds", low=0)),
    )


def _step(d: Any, name: str) -> CanaryStep:
    step = _mapping(d, name)
    if sum(k in step for k in ("setWeight", "pause", "shadow")) != 1:
        raise ValueError(f"{name}: exactly one of setWeight, pause or shadow must be set")
    if "shadow" in step:
        return CanaryStep(shadow=_shadow(_mapping(step["shadow"], f"{name}.shadow"), f"{name}.shadow"))
    if "setWeight" in step:
        return CanaryStep(set_weight=_int(step["setWeight"], f"{name}.setWeight", low=0, high=100))
    pause = _mapping(step["pause"], f"{name}.pause")
    duration = pause.get("duration")
    seconds = None if duration is None else parse_duration(duration, f"{name}.pause.duration")
    return CanaryStep(is_pause=True, pause_seconds=seconds)


def _shadow(d: Mapping[str, Any], where: str) -> ShadowStep:
    interval = d.get("interval")
    timeout = d.get("timeout")
    return ShadowStep(
        analysis=PairedConfig.from_spec(_mapping(d.get("analysis"), f"{where}.analysis"), f"{where}.analysis"),
        percent=_int(d.get("percent", ShadowStep.percent), f"{where}.percent", low=1, high=100),
        replicas=_int(d.get("replicas", ShadowStep.replicas), f"{where}.replicas", low=1, high=1000),
        interval_seconds=ShadowStep.interval_seconds if interval is None else parse_duration(
            interval, f"{where}.interval"),
        timeout_seconds=ShadowStep.timeout_seconds if timeout is None else parse_duration(
            timeout, f"{where}.timeout"),
    )


def _check_shadow_fits(strategy: CanaryStrategy | BlueGreenStrategy | ABTestStrategy, routing: TrafficRouting | None,
                       serving: ServingSpec, service: ServiceSpec) -> None:
    """As at admission: the shadow stage is mirrored by this project's server (issue 11: by a gateway)."""
    if not strategy.has_shadow:
        return
    where = "spec.strategy.canary.steps"
    if routing is not None and routing.router != "replicas":
        raise ValueError(f"{where}[0].shadow: needs the replicas router (mirroring through a gateway is not "
                         "supported yet)")
    if not serving.metrics.is_own_server:
        raise ValueError(f"{where}[0].shadow: needs this project's model server (it mirrors the requests)")
    if len(service.name) > 56:
        raise ValueError("spec.service.name: at most 56 characters with a shadow step "
                         "(the candidate's Service is <name>-shadow)")


def check_ab_test_fits(serving: ServingSpec, analysis: AnalysisConfig | None) -> None:
    """As at admission: an A/B experiment's arms are counted by the analysis scrape (so spec.analysis is
    required), its accuracy goal from the feedback counters the pods of this project's server expose (the
    Prometheus source asks for feedback only for an accuracy metric: not supported with abTest yet)."""
    if analysis is None:
        raise ValueError("spec.analysis: required with spec.strategy.abTest (its guard-rails; its scrape counts "
                         "the arms)")
    if not serving.metrics.is_own_server or analysis.prometheus is not None:
        raise ValueError("spec.strategy.abTest.goal: accuracy and outcomes need this project's model server "
                         "(spec.serving.metrics preset modelserver, no explicit names), scraped from its pods "
                         "(spec.analysis.source pods)")


def _check_rising(steps: tuple[CanaryStep, ...]) -> None:
    weights = [s.set_weight for s in steps if s.set_weight is not None]
    if any(b <= a for a, b in itertools.pairwise(weights)):
        raise ValueError(f"spec.strategy.canary.steps: setWeight values must rise, got {weights}")
    if 100 in weights and steps[-1].set_weight != 100:
        raise ValueError("spec.strategy.canary.steps: setWeight 100 (the promotion) must be the last step")


def _routing(spec: Mapping[str, Any]) -> TrafficRouting | None:
    """Without spec.trafficRouting a canary's header route or replica floor, or an A/B experiment's sticky
    split, would be silently ignored."""
    strategy = spec["strategy"]
    if "trafficRouting" in spec:
        return _traffic_routing(_mapping(spec["trafficRouting"], "spec.trafficRouting"), strategy)
    canary = strategy.get("canary") or {}
    if "headerRoute" in canary or "canaryReplicas" in canary:
        raise ValueError("spec.strategy.canary: headerRoute and canaryReplicas need spec.trafficRouting.gatewayAPI")
    _check_sticky(strategy, None)
    return None


def _check_sticky(strategy: Mapping[str, Any], router: str | None) -> None:
    if "sticky" in (strategy.get("abTest") or {}) and router != "gatewayAPI":
        raise ValueError("spec.strategy.abTest.sticky: needs spec.trafficRouting.gatewayAPI (the route keeps a "
                         "user's requests on the arm their cookie names)")


def _header_route(d: Mapping[str, Any]) -> HeaderMatch:
    where = "spec.strategy.canary.headerRoute"
    return HeaderMatch(name=_str(d.get("name"), f"{where}.name", HEADER_NAME_PATTERN),
                       value=_str(d.get("value"), f"{where}.value"))


# Each router serves some kinds of strategy (the keys under spec.strategy): replica weights split a canary or
# an A/B experiment, a route too (exactly, and sticky by cookie), selectors switch whole versions (blue-green).
ROUTER_STRATEGIES = {"replicas": ("canary", "abTest"), "gatewayAPI": ("canary", "abTest"), "service": ("blueGreen",)}


def _traffic_routing(d: Mapping[str, Any], strategy: Mapping[str, Any]) -> TrafficRouting:
    named = [k for k in ROUTER_STRATEGIES if k in d]
    if len(named) != 1:
        raise ValueError("spec.trafficRouting: set exactly one of replicas, service or gatewayAPI")
    router = named[0]
    if not any(k in strategy for k in ROUTER_STRATEGIES[router]):
        raise ValueError(f"spec.trafficRouting.{router}: needs spec.strategy."
                         + " or ".join(ROUTER_STRATEGIES[router]))
    canary = strategy.get("canary") or {}
    if router != "gatewayAPI" and ("headerRoute" in canary or "canaryReplicas" in canary):
        raise ValueError("spec.strategy.canary: headerRoute and canaryReplicas need spec.trafficRouting.gatewayAPI")
    _check_sticky(strategy, router)
    if router != "gatewayAPI":
        return TrafficRouting(router=router)
    gw = _mapping(d["gatewayAPI"], "spec.trafficRouting.gatewayAPI")
    namespace = gw.get("namespace")
    return TrafficRouting(
        router=router,
        http_route=_str(gw.get("httpRoute"), "spec.trafficRouting.gatewayAPI.httpRoute", DNS_NAME_PATTERN),
        namespace=None if namespace is None else _str(namespace, "spec.trafficRouting.gatewayAPI.namespace",
                                                      DNS_LABEL_PATTERN),
        scale_down_delay_seconds=float(_int(
            gw.get("scaleDownDelaySeconds", int(TrafficRouting.scale_down_delay_seconds)),
            "spec.trafficRouting.gatewayAPI.scaleDownDelaySeconds", low=0, high=3600)),
    )


SHA256_HEX_PATTERN = r"^[a-f0-9]{64}$"
DATA_FILE_PATTERN = r"^[A-Za-z0-9._-]+\.(csv|npz)$"


def _validation(d: Mapping[str, Any]) -> ValidationSpec:
    where = "spec.validation"
    data = _mapping(d.get("data"), f"{where}.data")
    if ("configMap" in data) == ("url" in data):
        raise ValueError(f"{where}.data: set exactly one of configMap or url")
    checks = d.get("checks", {})
    if not isinstance(checks, Mapping):
        raise ValueError(f"{where}.checks: must be an object")
    timeout = _int(d.get("timeoutSeconds", ValidationSpec.timeout_seconds), f"{where}.timeoutSeconds",
                   low=10, high=3600)
    if "configMap" in data:
        ref = _mapping(data["configMap"], f"{where}.data.configMap")
        return ValidationSpec(config_map=_str(ref.get("name"), f"{where}.data.configMap.name", DNS_NAME_PATTERN),
                              key=_str(ref.get("key"), f"{where}.data.configMap.key", DATA_FILE_PATTERN),
                              checks=dict(checks), timeout_seconds=timeout)
    url = _str(data.get("url"), f"{where}.data.url", r"^https?://.+")
    name = url.rsplit("/", 1)[-1].split("?", 1)[0]
    if not re.fullmatch(DATA_FILE_PATTERN, name):
        raise ValueError(f"{where}.data.url: the file name must end in .csv or .npz, got {name!r}")
    return ValidationSpec(url=url, sha256=_str(data.get("sha256"), f"{where}.data.sha256", SHA256_HEX_PATTERN),
                          checks=dict(checks), timeout_seconds=timeout)
