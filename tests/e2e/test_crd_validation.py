"""The ModelRollout CRD against a real apiserver: valid rollouts are stored (status through the
status subresource, nothing pruned), invalid ones are refused with a message naming the field."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes
import pytest

pytestmark = pytest.mark.e2e
GROUP, VERSION, PLURAL = "modelrollout.dev", "v1alpha1", "modelrollouts"
DIGEST = "sha256:" + "a" * 64


def make_rollout(name: str = "fraud", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 4,
        "model": {"name": "fraud", "version": "2", "uri": "http://model-store/fraud/2/model.joblib",
                  "digest": DIGEST, "format": "joblib"},
        "serving": {"image": "modelserver:dev", "port": 8080, "resources": {"limits": {"cpu": "1"}},
                    "env": [{"name": "LOG_LEVEL", "value": "info"}]},
        "service": {"name": "fraud", "port": 80},
        "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "2m"}},
                                          {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}},
        "analysis": {
            "interval": "15s", "minSamples": 200, "alpha": 0.05, "failureLimit": 2, "inconclusiveLimit": 20,
            "minExposure": "1m", "timeout": {"after": "10m", "action": "Pause"},
            "metrics": [
                {"name": "error-rate", "type": "errorRate", "max": 0.01},
                {"name": "latency-p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 1.25},
                {"name": "accuracy", "type": "accuracy", "minRatioToStable": 0.98, "weight": 2},
            ],
        },
    }
    spec.update(spec_overrides)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name},
            "spec": spec}


STATUS = {
    "phase": "Progressing", "reason": "Measuring", "message": "weight 25%", "stableVersion": "1",
    "canaryVersion": "2", "stableModel": {"version": "1", "uri": "http://m/1"},
    "canaryModel": {"version": "2", "uri": "http://m/2", "digest": DIGEST},
    "currentStepIndex": 1, "stepStartedAt": "2026-01-01T00:00:00Z", "desiredWeight": 25,
    "effectiveWeight": 24.5, "lastCommandId": "c1", "observedGeneration": 1,
    "conditions": [{"type": "Ready", "status": "False", "reason": "Measuring", "message": "m",
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
    "analysis": {"ticks": 3, "consecutiveFailures": 1, "consecutiveInconclusive": 0, "lastVerdict": "Fail",
                 "nextTickAt": "2026-01-01T00:00:15Z",
                 "results": [{"name": "error-rate", "verdict": "Fail", "message": "5% > 1%", "canaryValue": 0.05,
                              "stableValue": 0.01, "interval": [0.02, 0.08], "pValue": 0.001,
                              "canarySamples": 400, "stableSamples": 1200}],
                 "engineState": {"error-rate": {"s": 1.5, "nested": [1, 2]}}},
    "history": [{"version": "1", "outcome": "Deployed", "reason": "FirstVersion",
                 "finishedAt": "2026-01-01T00:00:00Z", "model": {"version": "1", "uri": "http://m/1"}}],
}


@pytest.fixture
def api(cluster: Any, apply_crds: None) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(cluster.api)


def test_valid_rollout_and_status_round_trip(api: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_rollout())
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "fraud", {"status": STATUS})
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")
    assert stored["status"] == STATUS  # nothing pruned, engineState kept as is
    assert stored["spec"]["analysis"]["metrics"][2]["weight"] == 2
    assert stored["spec"]["strategy"]["canary"]["steps"][3] == {"pause": {}}


def test_longest_name_and_a_distinct_preview_service_are_accepted(
    api: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    body = make_rollout(name="f" * 63, strategy={"blueGreen": {"previewService": "fraud-preview"}})
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def test_defaults_are_filled(api: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    body = make_rollout(strategy={"blueGreen": {"previewService": "fraud-preview"}})
    body["spec"].pop("replicas")
    del body["spec"]["service"]["port"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    spec = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")["spec"]
    assert (spec["replicas"], spec["service"]["port"], spec["progressDeadlineSeconds"]) == (1, 80, 600)
    assert spec["strategy"]["blueGreen"]["scaleDownDelaySeconds"] == 30
    assert spec["model"]["allowPickle"] is False  # joblib stays closed unless the owner opts in


def test_an_ab_test_is_stored_with_its_defaults_and_the_replicas_router(
    api: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    body = make_rollout(strategy={"abTest": {}}, trafficRouting={"replicas": {}})
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    ab = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")["spec"]["strategy"]["abTest"]
    assert ab == {"weight": 50, "goal": {"type": "accuracy", "minEffect": 0.0, "alpha": 0.05},
                  "minSamplesPerArm": 200, "maxSamples": 20000, "maxDuration": "1h"}


POD_TEMPLATE = {"metadata": {"labels": {"team": "ml"}, "annotations": {"example.com/a": "b"}},
                "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                         "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                         "affinity": {"nodeAffinity": {}},
                         "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                        "whenUnsatisfiable": "ScheduleAnyway"}],
                         "imagePullSecrets": [{"name": "regcred"}], "serviceAccountName": "model-reader",
                         "priorityClassName": "high", "volumes": [{"name": "ca", "configMap": {"name": "ca"}}]}}


def _serving(**changes: Any) -> dict[str, Any]:
    serving = copy.deepcopy(make_rollout()["spec"]["serving"])
    serving.update(changes)
    return serving


def _template(**spec: Any) -> dict[str, Any]:
    template = copy.deepcopy(POD_TEMPLATE)
    template["spec"].update(spec)
    return template


def test_a_pod_template_a_budget_and_mounts_are_stored_and_resources_defaulted(
        api: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    serving = {"podTemplate": POD_TEMPLATE, "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
               "podDisruptionBudget": {"maxUnavailable": "50%"}}
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_rollout(serving=serving))
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")["spec"]["serving"]
    assert stored["podTemplate"] == POD_TEMPLATE, "nothing pruned"
    assert stored["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}


def test_kubernetes_typed_fields_are_stored_as_written(
        api: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
    # Given env, resources, affinity and a spread constraint written as in a pod (integer and string quantities)
    serving = _serving(
        env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token", "optional": True}}},
             {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        resources={"limits": {"cpu": 2, "memory": "1Gi", "nvidia.com/gpu": 1}, "requests": {"cpu": "500m"}},
        podTemplate=_template(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["l4"]}]}]}}}))
    # When the rollout is created
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_rollout(serving=serving))
    # Then it is stored unchanged: nothing pruned, no Kubernetes default added
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")["spec"]["serving"]
    assert {k: stored[k] for k in ("env", "resources", "podTemplate")} == {
        k: serving[k] for k in ("env", "resources", "podTemplate")}


def _without(path: str) -> dict[str, Any]:
    body = make_rollout()
    *parents, last = path.split(".")
    target = body["spec"]
    for key in parents:
        target = target[key]
    del target[last]
    return body


def _analysis(**changes: Any) -> dict[str, Any]:
    analysis = copy.deepcopy(make_rollout()["spec"]["analysis"])
    analysis.update(changes)
    return analysis


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"canary": {"steps": list(steps)}}


SEL = 'http_requests_total{namespace="{{namespace}}",version="{{version}}"}'
COUNT = f"sum(increase({SEL}[{{{{interval}}}}]))"


def _prometheus(**settings: Any) -> dict[str, Any]:
    return _analysis(source="prometheus", prometheus={"address": "http://prometheus.monitoring:9090", **settings})


def _queries(**queries: str) -> dict[str, Any]:
    return _prometheus(queries={"requests": COUNT, "errors": COUNT + " or vector(0)", **queries})


ERROR_RATE = {"name": "error-rate", "type": "errorRate", "max": 0.01}
LATENCY = {"name": "latency-p99", "type": "latency", "quantile": 0.99, "maxRatioToStable": 1.25}


def _server(metrics: dict[str, Any], *analysis_metrics: dict[str, Any]) -> dict[str, Any]:
    """A rollout whose pods are another server (spec.serving.metrics), with these analysis metrics."""
    return make_rollout(serving=_serving(metrics=metrics),
                        analysis=_analysis(metrics=list(analysis_metrics or [ERROR_RATE])))


OWN_SERVER_ONLY = "need this project's model server"


INVALID = [
    ("missing model", _without("model"), "spec.model"),
    ("missing version", _without("model.version"), "spec.model.version"),
    ("missing service name", _without("service.name"), "spec.service.name"),
    ("bad digest", make_rollout(model={"name": "f", "version": "2", "uri": "u", "digest": "sha256:xyz"}),
     "spec.model.digest"),
    ("allowPickle without digest", make_rollout(model={"name": "f", "version": "2", "uri": "u", "allowPickle": True}),
     "allowPickle needs digest"),
    ("weight over 100", make_rollout(strategy=_steps({"setWeight": 120})), "setWeight"),
    ("weights falling", make_rollout(strategy=_steps({"setWeight": 50}, {"setWeight": 25})),
     "spec.strategy.canary.steps: setWeight values must rise"),
    ("weight repeated", make_rollout(strategy=_steps({"setWeight": 50}, {"pause": {}}, {"setWeight": 50})),
     "spec.strategy.canary.steps: setWeight values must rise"),
    ("100 not last", make_rollout(strategy=_steps({"setWeight": 100}, {"pause": {}})),
     "setWeight 100 (the promotion) must be the last step"),
    ("step with both", make_rollout(strategy=_steps({"setWeight": 10, "pause": {}})), "spec.strategy.canary.steps"),
    ("two strategies", make_rollout(strategy={**_steps({"setWeight": 10}),
                                              "blueGreen": {"previewService": "p"}}), "spec.strategy"),
    ("no strategy", make_rollout(strategy={}), "spec.strategy: set exactly one of canary, blueGreen or abTest"),
    ("minSamples zero", make_rollout(analysis=_analysis(minSamples=0)), "spec.analysis.minSamples"),
    ("bad interval", make_rollout(analysis=_analysis(interval="15 seconds")), "spec.analysis.interval"),
    ("bad pause duration", make_rollout(strategy=_steps({"pause": {"duration": "2 minutes"}})),
     "spec.strategy.canary.steps[0].pause.duration"),
    ("alpha zero", make_rollout(analysis=_analysis(alpha=0)), "spec.analysis.alpha"),
    ("alpha too big", make_rollout(analysis=_analysis(alpha=0.6)), "spec.analysis.alpha"),
    ("alpha one half", make_rollout(analysis=_analysis(alpha=0.5)), "spec.analysis.alpha"),
    ("metric without bound", make_rollout(analysis=_analysis(metrics=[{"name": "e", "type": "errorRate"}])),
     "a metric needs at least one of max"),
    ("duplicate metric names", make_rollout(analysis=_analysis(metrics=[
        {"name": "e", "type": "errorRate", "max": 0.1}, {"name": "e", "type": "latency", "max": 0.1}])),
     "spec.analysis.metrics: metric names must be unique"),
    ("unknown metric type", make_rollout(analysis=_analysis(metrics=[{"name": "e", "type": "cpu", "max": 1}])),
     "spec.analysis.metrics[0].type"),
    ("bad timeout action", make_rollout(analysis=_analysis(timeout={"after": "1m", "action": "Explode"})),
     "spec.analysis.timeout.action"),
    ("preview Service is the main Service", make_rollout(strategy={"blueGreen": {"previewService": "fraud"}}),
     "spec.strategy.blueGreen.previewService: must differ from spec.service.name"),
    ("name longer than a label value", make_rollout(name="f" * 64), "metadata.name: a ModelRollout name is at most 63"),
    ("zero replicas", make_rollout(replicas=0), "spec.replicas"),
    ("version not a label value", make_rollout(model={"name": "f", "version": "v 2", "uri": "u"}),
     "spec.model.version"),
    ("version longer than a label value", make_rollout(model={"name": "f", "version": "v" * 64, "uri": "u"}),
     "spec.model.version"),
    ("empty model uri", make_rollout(model={"name": "f", "version": "2", "uri": ""}), "spec.model.uri"),
    ("digest of another algorithm", make_rollout(model={"name": "f", "version": "2", "uri": "u",
                                                        "digest": "md5:" + "a" * 32}), "spec.model.digest"),
    ("unknown model format", make_rollout(model={"name": "f", "version": "2", "uri": "u", "format": "pickle"}),
     "spec.model.format"),
    ("serving port zero", make_rollout(serving={"image": "i", "port": 0}), "spec.serving.port"),
    ("service port too big", make_rollout(service={"name": "fraud", "port": 70000}), "spec.service.port"),
    ("service name not DNS", make_rollout(service={"name": "Fraud_Svc", "port": 80}), "spec.service.name"),
    ("negative weight", make_rollout(strategy=_steps({"setWeight": -5})), "spec.strategy.canary.steps[0].setWeight"),
    ("negative pause", make_rollout(strategy=_steps({"pause": {"duration": "-5s"}})),
     "spec.strategy.canary.steps[0].pause.duration"),
    ("preview Service not DNS", make_rollout(strategy={"blueGreen": {"previewService": "Preview!"}}),
     "spec.strategy.blueGreen.previewService"),
    ("failureLimit zero", make_rollout(analysis=_analysis(failureLimit=0)), "spec.analysis.failureLimit"),
    ("timeout without unit", make_rollout(analysis=_analysis(timeout={"after": "20", "action": "Pause"})),
     "spec.analysis.timeout.after"),
    ("quantile not offered", make_rollout(analysis=_analysis(metrics=[
        {"name": "l", "type": "latency", "quantile": 0.95, "max": 0.2}])), "spec.analysis.metrics[0]"),
    ("negative margin", make_rollout(analysis=_analysis(metrics=[
        {"name": "e", "type": "errorRate", "margin": -0.01}])), "spec.analysis.metrics[0].margin"),
    ("metric name not DNS", make_rollout(analysis=_analysis(metrics=[
        {"name": "Error Rate", "type": "errorRate", "max": 0.01}])), "spec.analysis.metrics[0].name"),
    ("zero metric weight", make_rollout(analysis=_analysis(metrics=[
        {"name": "e", "type": "errorRate", "max": 0.01, "weight": 0}])), "spec.analysis.metrics[0].weight"),
    ("operator label in the pod template", make_rollout(serving=_serving(podTemplate={"metadata": {"labels": {
        "modelrollout.dev/version": "x"}}})), "spec.serving.podTemplate.metadata.labels: modelrollout.dev/rollout"),
    ("volume named scratch", make_rollout(serving=_serving(podTemplate=_template(volumes=[
        {"name": "scratch", "emptyDir": {}}]))), "spec.serving.podTemplate.spec.volumes[].name: scratch"),
    ("mount of no volume", make_rollout(serving=_serving(volumeMounts=[{"name": "nope", "mountPath": "/x"}])),
     "spec.serving.volumeMounts[].name: must name a volume"),
    ("mount over the scratch directory", make_rollout(serving=_serving(podTemplate=POD_TEMPLATE, volumeMounts=[
        {"name": "ca", "mountPath": "/var/lib/modelserver/tmp"}])), "spec.serving.volumeMounts[].mountPath"),
    ("bad toleration operator", make_rollout(serving=_serving(podTemplate=_template(tolerations=[
        {"key": "gpu", "operator": "Maybe"}]))), "spec.serving.podTemplate.spec.tolerations[0].operator"),
    ("bad service account name", make_rollout(serving=_serving(podTemplate=_template(serviceAccountName="Bad_Name"))),
     "spec.serving.podTemplate.spec.serviceAccountName"),
    ("budget with both limits", make_rollout(serving=_serving(podDisruptionBudget={"maxUnavailable": 1,
                                                                                  "minAvailable": 1})),
     "spec.serving.podDisruptionBudget: set exactly one"),
    ("budget with a bad percentage", make_rollout(serving=_serving(podDisruptionBudget={"minAvailable": "half"})),
     "spec.serving.podDisruptionBudget.minAvailable: Invalid value"),
    ("prometheus source without settings", make_rollout(analysis=_analysis(source="prometheus")),
     "spec.analysis.prometheus: required with source: prometheus"),
    ("prometheus settings with the pod source", make_rollout(analysis=_analysis(prometheus={"address": "http://p"})),
     "spec.analysis.prometheus: only used with source: prometheus"),
    ("prometheus address not a URL", make_rollout(analysis=_prometheus(address="prometheus:9090")),
     "spec.analysis.prometheus.address"),
    ("prometheus timeout over a minute", make_rollout(analysis=_prometheus(timeout="2m")),
     "spec.analysis.prometheus.timeout: must be above 0 and at most 60s"),
    ("CA and skip-verify", make_rollout(analysis=_prometheus(address="https://p", tls={
        "insecureSkipVerify": True, "caSecret": {"name": "ca", "key": "ca.crt"}})),
     "spec.analysis.prometheus.tls: set caSecret or insecureSkipVerify, not both"),
    ("CA with plain http", make_rollout(analysis=_prometheus(tls={"caSecret": {"name": "ca", "key": "ca.crt"}})),
     "spec.analysis.prometheus.tls.caSecret: only used with an https:// address"),
    ("errors without requests", make_rollout(analysis=_prometheus(queries={"errors": COUNT})),
     "spec.analysis.prometheus.queries: errors and requests go together"),
    ("query without version", make_rollout(analysis=_queries(
        requests='sum(increase(x{job="a"}[{{interval}}]))')), "spec.analysis.prometheus.queries.requests"),
    ("a rate, not a count", make_rollout(analysis=_queries(errors=f"sum(rate({SEL}[{{{{interval}}}}]))")),
     "spec.analysis.prometheus.queries.errors: Invalid value"),
    ("a ratio of two counts", make_rollout(analysis=_queries(errors=f"{COUNT} / {COUNT}")),
     "spec.analysis.prometheus.queries.errors: Invalid value"),
    ("unknown placeholder", make_rollout(analysis=_queries(requests=COUNT.replace("{{interval}}", "{{window}}"))),
     "unknown placeholder"),
    ("a quantile for buckets", make_rollout(analysis=_queries(
        latencyBuckets=f"histogram_quantile(0.99, sum by (le) (rate({SEL}[{{{{interval}}}}])))")),
     "spec.analysis.prometheus.queries.latencyBuckets: Invalid value"),
    ("two routers", make_rollout(trafficRouting={"replicas": {}, "gatewayAPI": {"httpRoute": "web"}}),
     "spec.trafficRouting: set exactly one of replicas, service or gatewayAPI"),
    ("gateway without a route", make_rollout(trafficRouting={"gatewayAPI": {}}),
     "spec.trafficRouting.gatewayAPI.httpRoute"),
    ("service router for a canary", make_rollout(trafficRouting={"service": {}}),
     "spec.trafficRouting.service: needs spec.strategy.blueGreen"),
    ("gateway router for blue-green", make_rollout(strategy={"blueGreen": {"previewService": "p"}},
                                                  trafficRouting={"gatewayAPI": {"httpRoute": "web"}}),
     "spec.trafficRouting.gatewayAPI: needs spec.strategy.canary or abTest"),
    ("header route without the gateway", make_rollout(strategy={"canary": {
        "steps": [{"setWeight": 5}], "headerRoute": {"name": "X-Canary", "value": "always"}}}),
     "spec.strategy.canary: headerRoute and canaryReplicas need spec.trafficRouting.gatewayAPI"),
    ("bad header name", make_rollout(trafficRouting={"gatewayAPI": {"httpRoute": "web"}}, strategy={"canary": {
        "steps": [{"setWeight": 5}], "headerRoute": {"name": "X Canary", "value": "always"}}}),
     "spec.strategy.canary.headerRoute.name"),
    ("service name too long for its canary Service", make_rollout(
        service={"name": "s" * 57}, trafficRouting={"gatewayAPI": {"httpRoute": "web"}}),
     "spec.service.name: at most 56 characters"),
    ("webhook without a url", make_rollout(notifications=[{"name": "team"}]),
     "spec.notifications[]: set exactly one of url and urlFrom"),
    ("webhook with a url and urlFrom", make_rollout(notifications=[{
        "name": "team", "url": "http://hooks", "urlFrom": {"secretKeyRef": {"name": "s", "key": "url"}}}]),
     "spec.notifications[]: set exactly one of url and urlFrom"),
    ("webhook url not http", make_rollout(notifications=[{"name": "team", "url": "ftp://hooks/x"}]),
     "spec.notifications[0].url"),
    ("webhook format unknown", make_rollout(notifications=[{"name": "team", "url": "http://h", "format": "teams"}]),
     "spec.notifications[0].format"),
    ("two webhooks with one name", make_rollout(notifications=[{"name": "team", "url": "http://a"},
                                                               {"name": "team", "url": "http://b"}]),
     "spec.notifications[1]"),
    ("validation without data", make_rollout(validation={"checks": {"minAccuracy": 0.9}}), "spec.validation.data"),
    ("validation with a ConfigMap and a URL", make_rollout(validation={"data": {
        "configMap": {"name": "h", "key": "h.csv"}, "url": "https://d/h.csv", "sha256": "a" * 64}}),
     "spec.validation.data: set exactly one of configMap or url"),
    ("validation URL without sha256", make_rollout(validation={"data": {"url": "https://d/h.csv"}}),
     "spec.validation.data.sha256: required"),
    ("validation data neither csv nor npz", make_rollout(validation={"data": {
        "configMap": {"name": "h", "key": "h.txt"}}}), "spec.validation.data.configMap.key"),
    ("validation timeout too short", make_rollout(validation={"data": {
        "configMap": {"name": "h", "key": "h.csv"}}, "timeoutSeconds": 5}), "spec.validation.timeoutSeconds"),
    ("accuracy with the mlserver preset", make_rollout(serving=_serving(metrics={"preset": "mlserver"})),
     OWN_SERVER_ONLY),
    ("meanAbsoluteError with explicit names", _server(
        {"requestCounter": "http_requests_total", "errorCodeLabel": "status"},
        {"name": "mae", "type": "meanAbsoluteError", "max": 3.0}),
     OWN_SERVER_ONLY),
    ("errorRate with the kserve preset", _server({"preset": "kserve"}), "errorRate needs errors"),
    ("latency with the triton preset", _server({"preset": "triton"}, ERROR_RATE, LATENCY),
     "latency needs spec.serving.metrics.latencyHistogram"),
    ("unknown server preset", _server({"preset": "torchserve"}), "spec.serving.metrics.preset"),
    ("success counter without failures", _server({"successCounter": "ok_total"}),
     "spec.serving.metrics.failureCounter: successCounter and failureCounter go together"),
    ("request and success counters", _server({"requestCounter": "r_total", "successCounter": "ok_total",
                                              "failureCounter": "failed_total"}),
     "spec.serving.metrics: set requestCounter or successCounter"),
    ("error code label with success counters", _server({"successCounter": "ok_total", "failureCounter": "failed_total",
                                                        "errorCodeLabel": "code"}),
     "spec.serving.metrics.errorCodeLabel: only with requestCounter"),
    ("a histogram name with a dash", _server({"preset": "mlserver", "latencyHistogram": "rest-latency"}),
     "spec.serving.metrics.latencyHistogram"),
    ("latencyMatch without a histogram", _server({"preset": "kserve", "requestCounter": "r_total",
                                                  "errorCodeLabel": "code", "latencyMatch": {"path": ".*"}}),
     "spec.serving.metrics.latencyHistogram: required with latencyMatch"),
]


# env, resources, affinity, topologySpreadConstraints and volumes have Kubernetes' own schemas (core/v1,
# inlined by `make crd`). The operator's parser does not repeat core/v1's validation: the API server applies it again
# to every Deployment the operator writes.
INVALID_KUBERNETES_TYPES = [
    ("env without a name", make_rollout(serving=_serving(env=[{"value": "x"}])), "spec.serving.env[0].name"),
    ("a quantity that is none", make_rollout(serving=_serving(resources={"limits": {"cpu": "lots"}})),
     "spec.serving.resources.limits.cpu"),
    # As in every CRD (and unlike a pod), a fraction is a string: cpu: 500m or "0.5".
    ("a fractional cpu as a number", make_rollout(serving=_serving(resources={"requests": {"cpu": 0.5}})),
     "spec.serving.resources.requests.cpu"),
    ("a spread constraint without a topology key", make_rollout(serving=_serving(podTemplate=_template(
        topologySpreadConstraints=[{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]))),
     "spec.serving.podTemplate.spec.topologySpreadConstraints[0].topologyKey"),
    ("a required node affinity without terms", make_rollout(serving=_serving(podTemplate=_template(affinity={
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}))),
     "spec.serving.podTemplate.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
     ".nodeSelectorTerms"),
    ("a ConfigMap volume item without a path", make_rollout(serving=_serving(podTemplate=_template(volumes=[
        {"name": "ca", "configMap": {"name": "ca", "items": [{"key": "ca.crt"}]}}]))),
     "spec.serving.podTemplate.spec.volumes[0].configMap.items[0].path"),
]


def _checks(**checks: Any) -> dict[str, Any]:
    return make_rollout(validation={"data": {"configMap": {"name": "h", "key": "h.csv"}}, "checks": checks})


# Refused at admission, and by the one parser of spec.validation.checks, which the validation Job runs
# (tests/serving/test_validation.py checks it refuses these too, naming the same field).
INVALID_CHECKS = [
    ("minAccuracy above 1", _checks(minAccuracy=1.5), "spec.validation.checks.minAccuracy"),
    ("negative regression", _checks(maxRegression={"f1": -1}), "spec.validation.checks.maxRegression.f1"),
    ("unknown dtype", _checks(features=[{"name": "x", "dtype": "text"}]), "spec.validation.checks.features[0].dtype"),
    ("feature min above max", _checks(features=[{"name": "x", "min": 2, "max": 1}]),
     "spec.validation.checks.features[0]"),
    ("shift above 1", _checks(maxPredictionShift=2), "spec.validation.checks.maxPredictionShift"),
]


def _no_analysis(body: dict[str, Any]) -> dict[str, Any]:
    body["spec"].pop("analysis")
    return body


SHADOW = {"shadow": {"analysis": {"margin": 0.02}}}
# A shadow step is mirrored by this project's server, with the replicas router, as the first step; its
# analysis is refused by the same rules as PairedConfig.from_spec (tests/unit/core/test_shadow_step.py).
INVALID_SHADOW = [
    ("a shadow step after a weight", make_rollout(strategy=_steps({"setWeight": 10}, SHADOW)),
     "spec.strategy.canary.steps: a shadow step must be the first step"),
    ("a step with a weight and a shadow", make_rollout(strategy=_steps({"setWeight": 10, **SHADOW})),
     "each step sets exactly one of setWeight, pause or shadow"),
    ("a shadow analysis judging nothing", make_rollout(strategy=_steps({"shadow": {"analysis": {}}})),
     "spec.strategy.canary.steps[].shadow.analysis: needs at least one of"),
    ("margin and minImprovement", make_rollout(strategy=_steps(
        {"shadow": {"analysis": {"margin": 0.01, "minImprovement": 0.01}}})),
     "spec.strategy.canary.steps[].shadow.analysis.minImprovement"),
    ("minAgreement of 1", make_rollout(strategy=_steps({"shadow": {"analysis": {"minAgreement": 1.0}}})),
     "spec.strategy.canary.steps[].shadow.analysis.minAgreement"),
    ("a shadow percent of 0", make_rollout(strategy=_steps({"shadow": {"percent": 0, "analysis": {"margin": 0}}})),
     "percent"),
    ("a shadow through a gateway", make_rollout(strategy=_steps(SHADOW, {"setWeight": 50}),
                                                trafficRouting={"gatewayAPI": {"httpRoute": "web"}}),
     "spec.strategy.canary.steps[0].shadow: needs the replicas router"),
    ("a shadow on another server", _no_analysis(make_rollout(strategy=_steps(SHADOW), serving={
        "image": "mlserver:1.7.1", "metrics": {"preset": "mlserver"}})),
     "spec.strategy.canary.steps[0].shadow: needs this project's model server"),
]
AB = {"abTest": {"weight": 50}}
REVENUE = {"type": "outcome", "outcome": "revenue"}
# An A/B experiment needs spec.analysis (guard-rails, the scrape), the feedback counters of this project's server
# scraped from its pods for its accuracy goal, and the replicas router; the parser refuses the same.
INVALID_AB_TEST = [
    ("an A/B weight of 0", make_rollout(strategy={"abTest": {"weight": 0}}), "spec.strategy.abTest.weight"),
    ("an A/B weight of 100", make_rollout(strategy={"abTest": {"weight": 100}}), "spec.strategy.abTest.weight"),
    ("an A/B outcome goal naming no outcome", make_rollout(strategy={"abTest": {"goal": {"type": "outcome"}}}),
     "spec.strategy.abTest.goal.outcome: required with type outcome"),
    ("an A/B goal of another type", make_rollout(strategy={"abTest": {"goal": {"type": "clicks"}}}),
     "spec.strategy.abTest.goal.type"),
    ("an A/B outcome name that is not a label value",
     make_rollout(strategy={"abTest": {"goal": {"type": "outcome", "outcome": "Revenue ($)"}}}),
     "spec.strategy.abTest.goal.outcome"),
    ("an outcome named on an accuracy goal", make_rollout(strategy={"abTest": {"goal": {"outcome": "revenue"}}}),
     "spec.strategy.abTest.goal: outcome and binary only go with type outcome"),
    ("an A/B alpha of 0.5", make_rollout(strategy={"abTest": {"goal": {"alpha": 0.5}}}),
     "spec.strategy.abTest.goal.alpha"),
    ("an A/B accuracy minEffect of 1", make_rollout(strategy={"abTest": {"goal": {"minEffect": 1.0}}}),
     "spec.strategy.abTest.goal.minEffect: a share with type accuracy"),
    ("a negative A/B minEffect",
     make_rollout(strategy={"abTest": {"goal": {"type": "outcome", "outcome": "revenue", "minEffect": -1}}}),
     "spec.strategy.abTest.goal.minEffect"),
    ("a sticky A/B split without the gateway router",
     make_rollout(strategy={"abTest": {"goal": REVENUE, "sticky": {}}}),
     "spec.strategy.abTest.sticky: needs spec.trafficRouting.gatewayAPI"),
    ("a sticky A/B split judged on accuracy",
     make_rollout(strategy={"abTest": {"sticky": {}}}, trafficRouting={"gatewayAPI": {"httpRoute": "web"}}),
     "spec.strategy.abTest.sticky: needs goal.type outcome"),
    ("a sticky cookie name a regex would read",
     make_rollout(strategy={"abTest": {"goal": REVENUE, "sticky": {"cookie": "arm.*"}}},
                  trafficRouting={"gatewayAPI": {"httpRoute": "web"}}),
     "spec.strategy.abTest.sticky.cookie"),
    ("an A/B experiment without analysis", _no_analysis(make_rollout(strategy=AB)),
     "spec.analysis: required with spec.strategy.abTest"),
    ("an A/B experiment through Services switched by selector",
     make_rollout(strategy=AB, trafficRouting={"service": {}}),
     "spec.trafficRouting.service: needs spec.strategy.blueGreen"),
    ("an A/B experiment and a canary", make_rollout(strategy={**AB, "canary": {"steps": [{"setWeight": 5}]}}),
     "spec.strategy: set exactly one of canary, blueGreen or abTest"),
    ("an A/B accuracy goal on another server", make_rollout(strategy=AB, serving={
        "image": "mlserver:1.7.1", "metrics": {"preset": "mlserver"}}, analysis={"metrics": [ERROR_RATE]}),
     "spec.strategy.abTest.goal: accuracy and outcomes need this project's model server"),
    ("an A/B experiment on the Prometheus source", make_rollout(strategy=AB, analysis=_queries(
        feedbackCorrect=COUNT, feedbackIncorrect=COUNT)), "spec.strategy.abTest.goal: accuracy and outcomes need"),
]


def _drift(**drift: Any) -> dict[str, Any]:
    return make_rollout(monitoring={"drift": drift})


def _drift_retrain(template: dict[str, Any]) -> dict[str, Any]:
    return make_rollout(monitoring={"drift": {}, "retrain": {"jobTemplate": template}})


INVALID_MONITORING = [
    ("a drift window shorter than its interval", _drift(window="10s", interval="20s"),
     "spec.monitoring.drift.window: must be at least the interval"),
    ("a drift interval under a second", _drift(interval="500ms"),
     "spec.monitoring.drift.interval: must be at least 1s"),
    ("a drift alpha over 0.5", _drift(alpha=0.6), "spec.monitoring.drift.alpha"),
    ("a PSI threshold of 0", _drift(psiThreshold=0), "spec.monitoring.drift.psiThreshold"),
    ("drift minSamples of 0", _drift(minSamples=0), "spec.monitoring.drift.minSamples"),
    ("a drift feature named twice", _drift(features=["f0", "f0"]), "spec.monitoring.drift.features"),
    ("retraining without a drift watch", make_rollout(monitoring={"retrain": {"jobTemplate": {"spec": {"template": {
        "spec": {"containers": [{"name": "t", "image": "i"}]}}}}}}),
     "spec.monitoring.retrain: needs spec.monitoring.drift"),
    ("a retraining Job without containers", _drift_retrain({"spec": {"template": {"spec": {"containers": []}}}}),
     "spec.monitoring.retrain.jobTemplate.spec.template.spec.containers"),
    ("a retraining minAccuracy over 1", make_rollout(monitoring={"drift": {}, "retrain": {"minAccuracy": 1.5,
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "i"}]}}}}}}),
     "spec.monitoring.retrain.minAccuracy"),
    ("a drift reference digest that is not one", make_rollout(model={
        "name": "f", "version": "2", "uri": "u", "driftReferenceDigest": "md5:x"}), "spec.model.driftReferenceDigest"),
]
SPEC_CASES = (INVALID + INVALID_CHECKS + INVALID_KUBERNETES_TYPES + INVALID_SHADOW + INVALID_AB_TEST
              + INVALID_MONITORING)


@pytest.mark.parametrize(("case", "body", "field"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_invalid_rollout_is_rejected_naming_the_field(
    api: kubernetes.client.CustomObjectsApi, namespace: str, case: str, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(kubernetes.client.ApiException) as raised:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert raised.value.status == 422, raised.value.body
    assert field in raised.value.body, f"{case}: {raised.value.body}"


def test_prometheus_source_with_every_accepted_query_shape_is_stored_with_defaults(
    api: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    analysis = _queries(feedbackCorrect=COUNT, feedbackIncorrect=COUNT,
                        latencyBuckets=f"sum by (le) (increase({SEL}[{{{{interval}}}}]))")
    analysis["prometheus"].update(address="https://prometheus.monitoring.svc:9090",
                                  tls={"caSecret": {"name": "prom-ca", "key": "ca.crt"}},
                                  bearerTokenSecret={"name": "prom-token", "key": "token"})
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_rollout(analysis=analysis))
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")["spec"]["analysis"]
    assert stored["source"] == "prometheus" and stored["prometheus"]["timeout"] == "5s"
    assert stored["prometheus"]["tls"]["insecureSkipVerify"] is False
    assert stored["prometheus"]["queries"] == analysis["prometheus"]["queries"]
    default = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_rollout(name="pods"))
    assert default["spec"]["analysis"]["source"] == "pods"


def test_a_foreign_server_mapping_is_stored_and_its_preset_defaulted(
    api: kubernetes.client.CustomObjectsApi, namespace: str
) -> None:
    # errorRate and latency are what MLServer's metrics give; accuracy from the user's own PromQL is allowed.
    analysis = _queries(feedbackCorrect=COUNT, feedbackIncorrect=COUNT)
    analysis["metrics"] = [ERROR_RATE, LATENCY, {"name": "accuracy", "type": "accuracy", "minRatioToStable": 0.98}]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_rollout(
        serving=_serving(metrics={"preset": "mlserver", "port": 9000}), analysis=analysis))
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_rollout(
        name="named", serving=_serving(metrics={
            "requestCounter": "http_requests_total", "errorCodeLabel": "status",
            "latencyHistogram": "http_seconds", "latencyMatch": {"path": "/predict"}}),
        analysis=_analysis(metrics=[ERROR_RATE, LATENCY])))
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "named")["spec"]["serving"]["metrics"]
    assert stored["preset"] == "modelserver" and stored["latencyMatch"] == {"path": "/predict"}
