"""A real Gateway API data plane on the local cluster: the Gateway API CRDs (standard channel) and
Traefik (its Kubernetes Gateway provider) running as a pod, one per test namespace, behind Service
`gateway`. Built by `make gateway-bins` (hack/build-gateway.sh); a missing build fails the test.

    gw = Gateway(cluster, namespace)   # via the `gateway` fixture
    gw.create_route("fraud", backend="fraud")
    url = gw.url                       # http://<gateway ClusterIP>
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest

from localcluster import binaries
from localcluster.testing import wait_until
from tests.conftest import ClusterHandle

GW_GROUP, GW_VERSION = "gateway.networking.k8s.io", "v1"
GATEWAY_CLASS = "traefik"
TRAEFIK_IMAGE = f"traefik:{binaries.TRAEFIK_VERSION}"
LABELS = {"app": "traefik"}

# What Traefik's Kubernetes Gateway provider reads and the status it writes (Traefik's own docs).
TRAEFIK_RBAC_RULES = [
    {"apiGroups": [""], "resources": ["namespaces", "services", "secrets", "configmaps"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GW_GROUP], "resources": ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "tcproutes",
                                            "tlsroutes", "referencegrants", "backendtlspolicies"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GW_GROUP], "resources": ["gatewayclasses/status", "gateways/status", "httproutes/status",
                                            "grpcroutes/status", "tcproutes/status", "tlsroutes/status",
                                            "backendtlspolicies/status"],
     "verbs": ["update", "patch"]},
]


@pytest.fixture(scope="session")
def gateway_api(cluster: ClusterHandle) -> None:
    """The Gateway API CRDs and the `traefik` GatewayClass, once per cluster."""
    crds = binaries.gateway_crds()  # MissingBinaryError (a failure, never a skip) when not built
    binaries.traefik()
    cluster.kubectl("apply", "--server-side", "-f", str(crds))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_cluster_role({"metadata": {"name": "traefik-gateway"}, "rules": TRAEFIK_RBAC_RULES})
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    custom.create_cluster_custom_object(GW_GROUP, GW_VERSION, "gatewayclasses", {
        "apiVersion": f"{GW_GROUP}/{GW_VERSION}", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": "traefik.io/gateway-controller"}})


@dataclass
class Gateway:
    cluster: ClusterHandle
    namespace: str

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.cluster.api)

    @property
    def url(self) -> str:
        svc = kubernetes.client.CoreV1Api(self.cluster.api).read_namespaced_service("gateway", self.namespace)
        return f"http://{svc.spec.cluster_ip}"

    def start(self) -> None:
        ns = self.namespace
        rbac = kubernetes.client.RbacAuthorizationV1Api(self.cluster.api)
        core, apps = kubernetes.client.CoreV1Api(self.cluster.api), kubernetes.client.AppsV1Api(self.cluster.api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "traefik"}})
        rbac.create_cluster_role_binding({
            "metadata": {"name": f"traefik-{ns}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "traefik-gateway"},
            "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": ns}]})
        self.custom.create_namespaced_custom_object(GW_GROUP, GW_VERSION, ns, "gateways", {
            "apiVersion": f"{GW_GROUP}/{GW_VERSION}", "kind": "Gateway", "metadata": {"name": "web"},
            "spec": {"gatewayClassName": GATEWAY_CLASS,
                     "listeners": [{"name": "web", "port": 8000, "protocol": "HTTP"}]}})
        apps.create_namespaced_deployment(ns, {
            "metadata": {"name": "traefik"},
            "spec": {"replicas": 1, "selector": {"matchLabels": LABELS}, "template": {
                "metadata": {"labels": LABELS},
                "spec": {"serviceAccountName": "traefik", "containers": [{
                    "name": "traefik", "image": TRAEFIK_IMAGE,
                    # Pods are processes sharing the node's network namespace: bind the pod's own address.
                    "args": ["--entryPoints.web.address=$(POD_IP):8000",
                             "--entryPoints.traefik.address=$(POD_IP):9000",
                             "--ping=true", "--ping.entryPoint=traefik", "--api.insecure=true",
                             "--providers.kubernetesgateway=true",
                             f"--providers.kubernetesgateway.namespaces={ns}",
                             "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
                             "--log.level=INFO"],
                    "ports": [{"containerPort": 8000, "name": "web"}, {"containerPort": 9000, "name": "ping"}],
                    "readinessProbe": {"httpGet": {"path": "/ping", "port": 9000}, "periodSeconds": 1}}]}}}})
        core.create_namespaced_service(ns, {"metadata": {"name": "gateway"}, "spec": {
            "selector": LABELS, "ports": [{"name": "web", "port": 80, "targetPort": 8000}]}})
        self.wait_ready()

    def wait_ready(self) -> None:
        apps = kubernetes.client.AppsV1Api(self.cluster.api)
        wait_until(lambda: (apps.read_namespaced_deployment("traefik", self.namespace).status.ready_replicas or 0) >= 1,
                   60, "the Traefik gateway pod to be Ready")

    def scale(self, replicas: int) -> None:
        """Stop (0) or start (1) the data plane."""
        apps = kubernetes.client.AppsV1Api(self.cluster.api)
        apps.patch_namespaced_deployment("traefik", self.namespace, {"spec": {"replicas": replicas}})
        if replicas:
            self.wait_ready()
        else:
            core = kubernetes.client.CoreV1Api(self.cluster.api)
            wait_until(lambda: not core.list_namespaced_pod(self.namespace, label_selector="app=traefik").items,
                       60, "the Traefik pod to be gone")

    def create_route(self, name: str, backend: str, port: int = 80) -> None:
        """The user's HTTPRoute: everything on the Gateway to Service `backend`."""
        self.custom.create_namespaced_custom_object(GW_GROUP, GW_VERSION, self.namespace, "httproutes", {
            "apiVersion": f"{GW_GROUP}/{GW_VERSION}", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": "web"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": [{"name": backend, "port": port}]}]}})

    def route(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GW_GROUP, GW_VERSION, self.namespace, "httproutes", name))

    def weights(self, name: str) -> dict[str, int]:
        """Backend weights of the route's first rule without a header match, by Service name."""
        for rule in self.route(name)["spec"]["rules"]:
            if not any(m.get("headers") for m in rule.get("matches") or []):
                return {r["name"]: r.get("weight", 1) for r in rule.get("backendRefs") or []}
        return {}

    def routers(self) -> str:
        """Traefik's own view of its HTTP routers (rule, priority, service), for failure messages."""
        import urllib.request

        core = kubernetes.client.CoreV1Api(self.cluster.api)
        [pod] = core.list_namespaced_pod(self.namespace, label_selector="app=traefik").items
        with urllib.request.urlopen(f"http://{pod.status.pod_ip}:9000/api/http/routers", timeout=5) as response:
            return json.dumps([{k: r.get(k) for k in ("rule", "priority", "service", "status")}
                               for r in json.load(response)], indent=1)

    def is_accepted(self, name: str) -> bool:
        """Whether the gateway reported Accepted for the route's current generation."""
        route = self.route(name)
        return any(c.get("type") == "Accepted" and c.get("status") == "True"
                   and c.get("observedGeneration") == route["metadata"]["generation"]
                   for p in (route.get("status") or {}).get("parents") or [] for c in p.get("conditions") or [])


@pytest.fixture
def gateway(cluster: ClusterHandle, namespace: str, gateway_api: None) -> Gateway:
    gw = Gateway(cluster, namespace)
    gw.start()
    return gw
