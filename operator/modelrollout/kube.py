"""The one adapter between the operator and the Kubernetes API (official synchronous client).

Every method blocks: the reconcile layer calls them through `asyncio.to_thread` so kopf's event
loop never waits on the network. Nothing here decides anything.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from modelrollout import opmetrics, ownership, retrainjob, validationjob, workloads
from modelrollout.core.observations import (
    LABEL_ROLLOUT,
    LABEL_VERSION,
    DeploymentIntent,
    DeploymentObservation,
    RetrainJobIntent,
    RouteIntent,
    RouteObservation,
    ValidationJobIntent,
    ValidationJobObservation,
)
from modelrollout.core.phases import Event
from modelrollout.core.spec import RolloutSpec
from modelrollout.kubecache import Cache, CacheMiss, Reflector
from modelrollout.kubeevents import EventRecorder
from modelrollout.managedfields import applied_by
from modelrollout.ownership import OwnershipConflictError as OwnershipConflictError

GROUP, VERSION, PLURAL = "modelrollout.dev", "v1alpha1", "modelrollouts"
MERGE_PATCH = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "modelrollout"  # every object the operator writes is applied under this name
APPLY_PATCH = APPLY
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"


class PermissionDeniedError(RuntimeError):
    """The operator's ServiceAccount may not do something it needs; the message says what."""


@dataclass(frozen=True)
class PodTarget:
    name: str
    uid: str
    ip: str
    version: str
    started_at: str | None


@dataclass(frozen=True)
class PodState:
    """What the pod's status says about one serving pod: enough to tell why it is not Ready."""

    name: str
    version: str
    ip: str | None
    ready: bool
    deleting: bool
    restarts: int = 0
    waiting: tuple[str, str] | None = None  # a container's (reason, message) while it does not run
    last_exit: str | None = None  # the last termination's reason (OOMKilled, Error) and exit code
    uid: str = ""
    started_at: str | None = None


def ready_targets(pods: list[PodState]) -> list[PodTarget]:
    """The pods a metric source reads: Ready, with an address, not being deleted."""
    return [PodTarget(p.name, p.uid, p.ip, p.version, p.started_at) for p in pods
            if p.ready and p.ip and not p.deleting]


def _pod_state(pod: dict[str, Any]) -> PodState:
    """From the pod as the API server sends it (camelCase JSON)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    waiting = next(((w.get("reason") or "", w.get("message") or "") for c in containers
                    if (w := (c.get("state") or {}).get("waiting")) is not None), None)
    last = next((t for c in containers if (t := (c.get("lastState") or {}).get("terminated"))), None)
    started = status.get("startTime")
    return PodState(
        name=meta.get("name", ""), version=(meta.get("labels") or {}).get(LABEL_VERSION, ""), ip=status.get("podIP"),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []),
        deleting=meta.get("deletionTimestamp") is not None,
        restarts=sum(c.get("restartCount") or 0 for c in containers), waiting=waiting,
        last_exit=None if last is None else f"{last.get('reason') or 'exited'}, exit code {last.get('exitCode')}",
        uid=meta.get("uid") or "",
        started_at=None if not started else dt.datetime.fromisoformat(started).isoformat(),
    )


def _deployment_observation(d: dict[str, Any]) -> DeploymentObservation:
    meta, spec, st = d["metadata"], d.get("spec") or {}, d.get("status") or {}
    return DeploymentObservation(
        replicas=spec.get("replicas") or 0, ready_replicas=st.get("readyReplicas") or 0,
        updated_replicas=st.get("updatedReplicas") or 0, available_replicas=st.get("availableReplicas") or 0,
        up_to_date=(st.get("observedGeneration") or 0) >= (meta.get("generation") or 0),
    )


def _forbidden(exc: ApiException, verb: str, what: str, namespace: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"forbidden: the operator's ServiceAccount cannot {verb} {what} in namespace {namespace} "
        f"(HTTP {exc.status}); grant it in the operator's ClusterRole/Role (chart: rbac.*)"
    )


def _timed(kind: str) -> Any:
    def record(verb: str, seconds: float) -> None:
        opmetrics.API_SECONDS.labels(verb, kind).observe(seconds)
    return record


class KubeAdapter:
    def __init__(self, api: kubernetes.client.ApiClient, cache: Cache | None = None) -> None:
        self.api = api
        self.cache = cache  # watch-fed copies of pods, Deployments, Services (kubecache); None: read the API
        self.apps = kubernetes.client.AppsV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.recorder = EventRecorder(api)
        self.policy = kubernetes.client.PolicyV1Api(api)
        self.batch = kubernetes.client.BatchV1Api(api)
        # Both versions' Deployments may be created in one tick, in two threads: one key, not two.
        self._feedback_key_lock = threading.Lock()
        self._api_allowed = True  # False only in cache_view
        self.cache_view: KubeAdapter | None = None

    def _cache_only(self) -> KubeAdapter:
        """This adapter with the API server out of reach: its reads answer from the watch cache or raise
        CacheMiss where they would call the API. A tick calls them on the event loop (a dict look-up
        needs no worker thread: with 1,000 rollouts, cache reads queued 3.7 s on average for one,
        `make bench-operator`) and falls back to the adapter itself, in a thread, on a miss."""
        view = copy.copy(self)
        view._api_allowed = False
        return view

    def _get_or_none(self, what: str, namespace: str, read: Any, name: str) -> Any:
        """`read(name, namespace)` through _call; None when the object does not exist (404)."""
        try:
            return self._call("get", what, namespace, read, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def _need_api(self, verb: str, what: str, namespace: str) -> None:
        """In the cache-only view, stop here (CacheMiss): what follows must call the API."""
        if not self._api_allowed:
            raise CacheMiss(f"{verb} {what} in {namespace}")

    def _call(self, verb: str, what: str, namespace: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._need_api(verb, what, namespace)
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 403:
                raise _forbidden(exc, verb, what, namespace) from None
            raise
        finally:
            opmetrics.API_SECONDS.labels(verb, what).observe(time.monotonic() - started)

    def start_cache(self, namespaces: tuple[str, ...]) -> Cache:
        """Watch pods, Deployments and Services with the rollout label in `namespaces` (empty: all)."""
        kinds = {"pods": (self.core.list_namespaced_pod, self.core.list_pod_for_all_namespaces),
                 "deployments.apps": (self.apps.list_namespaced_deployment,
                                      self.apps.list_deployment_for_all_namespaces),
                 "services": (self.core.list_namespaced_service, self.core.list_service_for_all_namespaces)}
        reflectors = [Reflector(kind, namespaced if ns else everywhere, ns, LABEL_ROLLOUT, _timed(kind))
                      for kind, (namespaced, everywhere) in kinds.items() for ns in (namespaces or (None,))]
        self.cache = Cache(reflectors)
        self.cache.start()
        self.cache_view = self._cache_only()
        return self.cache

    def _raw(self, verb: str, what: str, namespace: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """The API's JSON answer as dicts, like the cache holds (and cheaper than the client's models)."""
        return json.loads(self._call(verb, what, namespace, fn, *args, _preload_content=False, **kwargs).data)

    def _labelled(self, kind: str, namespace: str, labels: dict[str, str], fn: Any) -> list[dict[str, Any]]:
        cached = None if self.cache is None else self.cache.select(kind, namespace, labels)
        if cached is not None:
            return cached
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return list(self._raw("list", kind, namespace, fn, namespace, label_selector=selector)["items"])

    def observe_deployments(self, namespace: str, rollout: str) -> dict[str, DeploymentObservation]:
        items = self._labelled("deployments.apps", namespace, {LABEL_ROLLOUT: rollout},
                               self.apps.list_namespaced_deployment)
        return {version: _deployment_observation(d) for d in items
                if (version := (d["metadata"].get("labels") or {}).get(LABEL_VERSION)) is not None
                and not d["metadata"].get("deletionTimestamp")}

    def pod_states(self, namespace: str, rollout: str) -> list[PodState]:
        return [_pod_state(p) for p in self._labelled("pods", namespace, {LABEL_ROLLOUT: rollout},
                                                      self.core.list_namespaced_pod)]

    def _read(self, kind: str, ns: str, name: str, fn: Any) -> dict[str, Any] | None:
        """One object by name: the cache's copy when it holds it, else the API's (None: absent).
        Absent from the cache proves nothing (it holds labelled objects only), so that is asked."""
        if self.cache is not None:
            synced, found = self.cache.get(kind, ns, name)
            if synced and found is not None:
                return found
        try:
            return dict(self._raw("get", kind, ns, fn, name, ns))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


    def _version_deployment(self, ns: str, rollout: str, version: str) -> dict[str, Any] | None:
        """The live Deployment running `version`, by its name if it carries that version's label,
        else by labels (a Deployment created before the naming rule changed keeps its old name)."""
        name = workloads.deployment_name(rollout, version)
        current = self._read("deployments.apps", ns, name, self.apps.read_namespaced_deployment)
        if current is not None:
            labels = current["metadata"].get("labels") or {}
            if labels.get(LABEL_ROLLOUT) != rollout or labels.get(LABEL_VERSION) != version:
                raise OwnershipConflictError(
                    f"Deployment {ns}/{name} exists but does not run version {version} of rollout {rollout} "
                    f"(labels {LABEL_ROLLOUT}={labels.get(LABEL_ROLLOUT)}, {LABEL_VERSION}="
                    f"{labels.get(LABEL_VERSION)}); rename or delete it")
            return current
        found = [d for d in self._labelled("deployments.apps", ns, {LABEL_ROLLOUT: rollout, LABEL_VERSION: version},
                                           self.apps.list_namespaced_deployment)
                 if not d["metadata"].get("deletionTimestamp")]
        return found[0] if found else None

    def _apply(self, what: str, ns: str, fn: Any, body: dict[str, Any], *, force: bool, creates: bool = False) -> None:
        """Server-side apply as field manager `modelrollout`: the fields in `body` become ours, the
        ones we sent before and left out now are removed, and other managers' fields stay. An apply
        that creates the object needs the `create` verb besides `patch`, so a 403 names that one."""
        self._call("create" if creates else "patch", what, ns, fn, body["metadata"]["name"], ns, body,
                   _content_type=APPLY, field_manager=FIELD_MANAGER, force=force)

    def apply_deployment(self, rollout: dict[str, Any], spec: RolloutSpec, version: str,
                         intent: DeploymentIntent) -> None:
        """Scale the Deployment that runs `version` (never one whose version label differs) or create it.

        An existing Deployment gets back what the operator applied before (its pod template never
        changes, so a promotion restarts no pod) with the new replicas; nothing is sent when that
        is what it has. `force`: replicas carry the traffic weight and the capacity promise, so a
        `kubectl scale` or an HPA is overridden (and the conflict visible in managedFields)."""
        ns, rollout_name = rollout["metadata"]["namespace"], rollout["metadata"]["name"]
        current = self._version_deployment(ns, rollout_name, version)
        if current is None:
            if intent.model is None or intent.replicas == 0:
                return  # nothing to run, or no model to build it from
            self._need_api("create", "deployments.apps", ns)  # before the key's lock, which the loop must not wait on
            self.ensure_feedback_key(rollout)  # its pods mount it: it exists before they are scheduled
            body = workloads.deployment(rollout, spec, intent.model, intent.replicas)
        else:
            ours = workloads.identity(applied_by(current, FIELD_MANAGER),
                                      "apps/v1", "Deployment", current["metadata"]["name"], ns)
            body = workloads.merged(ours, workloads.deployment_scale(rollout, current["metadata"]["name"], version,
                                                                     intent.replicas))
            if body == ours:
                return
        self._apply("deployments.apps", ns, self.apps.patch_namespaced_deployment, body, force=True,
                    creates=current is None)
        budget = workloads.disruption_budget(rollout, spec, body["metadata"]["name"], version)
        if budget is not None:  # applied with its Deployment: a spec change reaches it at the next scale
            self._apply("poddisruptionbudgets.policy", ns, self.policy.patch_namespaced_pod_disruption_budget,
                        budget, force=True, creates=current is None)

    def ensure_feedback_key(self, rollout: dict[str, Any]) -> None:
        """Create the rollout's prediction-token key Secret if it is missing; an existing one is kept as is.

        Never rotated: every token handed out so far must keep verifying. A Secret of that name that is not
        this rollout's (no owner reference to it) is a conflict, not something to overwrite."""
        with self._feedback_key_lock:
            self._ensure_feedback_key(rollout)

    def _ensure_feedback_key(self, rollout: dict[str, Any]) -> None:
        ns, name = rollout["metadata"]["namespace"], rollout["metadata"]["name"]
        secret_name = workloads.feedback_key_secret_name(name)
        current = self._get_or_none("secrets", ns, self.core.read_namespaced_secret, secret_name)
        if current is None:
            self._apply("secrets", ns, self.core.patch_namespaced_secret, workloads.feedback_key_secret(rollout),
                        force=False, creates=True)
            return
        owners = {ref.uid for ref in current.metadata.owner_references or ()}
        if rollout["metadata"]["uid"] not in owners:
            raise OwnershipConflictError(f"Secret {ns}/{secret_name} exists but is not rollout {name}'s "
                                         "prediction-token key; rename or delete it")

    def observe_mirror_config(self, rollout: dict[str, Any]) -> dict[str, str] | None:
        """The data of the rollout's mirror ConfigMap, None when it does not exist (read by name). One that
        another owner holds is a conflict, never overwritten."""
        namespace, rollout_name = rollout["metadata"]["namespace"], rollout["metadata"]["name"]
        name = workloads.mirror_config_map_name(rollout_name)
        found = self._get_or_none("configmaps", namespace, self.core.read_namespaced_config_map, name)
        if found is None:
            return None
        owners = {ref.uid for ref in found.metadata.owner_references or ()}
        if rollout["metadata"]["uid"] not in owners:
            raise OwnershipConflictError(f"ConfigMap {namespace}/{name} exists but is not rollout {rollout_name}'s "
                                         "mirror configuration; rename or delete it")
        return dict(found.data or {})

    def apply_mirror_config(self, rollout: dict[str, Any], data: dict[str, str]) -> None:
        """Server-side apply the mirror ConfigMap's data: the stable pods see the change within seconds,
        without a restart (the kubelet swaps the mounted files, the server watches them)."""
        self._apply("configmaps", rollout["metadata"]["namespace"], self.core.patch_namespaced_config_map,
                    workloads.mirror_config_map(rollout, data), force=True)

    def delete_version(self, rollout: dict[str, Any], version: str) -> None:
        ns, rollout_name = rollout["metadata"]["namespace"], rollout["metadata"]["name"]
        current = self._version_deployment(ns, rollout_name, version)
        if current is None:
            return
        # The uid precondition: only the object just checked is deleted, never one that replaced it.
        options = kubernetes.client.V1DeleteOptions(propagation_policy="Background",
                                                    preconditions={"uid": current["metadata"]["uid"]})
        try:
            self._call("delete", "deployments.apps", ns, self.apps.delete_namespaced_deployment,
                       current["metadata"]["name"], ns, body=options)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
        try:  # its PodDisruptionBudget, if spec ever asked for one (named as the Deployment)
            self._call("delete", "poddisruptionbudgets.policy", ns,
                       self.policy.delete_namespaced_pod_disruption_budget, current["metadata"]["name"], ns)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _read_service(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._read("services", ns, name, self.core.read_namespaced_service)

    def service_selector(self, rollout: dict[str, Any], name: str) -> dict[str, str] | None:
        """The selector of Service `name` (None: absent); OwnershipConflictError when it belongs to
        another rollout or controller, so a tick stops before it writes anything."""
        live = self._read_service(rollout["metadata"]["namespace"], name)
        if live is None:
            return None
        ownership.check_owner(live, rollout)
        return dict(live["spec"].get("selector") or {})

    def ensure_service(self, rollout: dict[str, Any], name: str, port: int, target_port: int,
                       selector: dict[str, str]) -> None:
        """Create the Service (owned by the rollout) or set its selector; a Service that existed
        before (the user's) is adopted: its selector is recorded, taken over and given back when the
        rollout is deleted, and the Service itself is never deleted. The selector is a router's
        output (modelrollout.core.routers); nothing here chooses it.

        `force`: the router must own the selector - of an adopted Service it was the user's, and
        the Service would otherwise keep sending clients to the old pods."""
        ns = rollout["metadata"]["namespace"]
        live = self._read_service(ns, name)
        if live is None:
            body = workloads.service(rollout, name, port, target_port, selector)
            self._apply("services", ns, self.core.patch_namespaced_service, body, force=False, creates=True)
            return
        ownership.check_owner(live, rollout)
        ours = workloads.identity(applied_by(live, FIELD_MANAGER), "v1", "Service", name, ns)
        if ownership.created_by(live, rollout):
            wanted = workloads.service(rollout, name, port, target_port, selector)
        else:
            wanted = ownership.adoption(live, rollout, selector)
        body = workloads.merged(ours, wanted)
        # The selector is replaced, not merged: a key the router no longer wants (the version of a Service that
        # selected one version and now selects all, after a shadow stage) must go.
        body["spec"]["selector"] = dict(selector)
        if body == ours:
            return
        if not ownership.created_by(live, rollout):
            # Two rollouts adopting at once both saw it free: the second apply fails (409).
            body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        self._apply("services", ns, self.core.patch_namespaced_service, body, force=True)

    def release_services(self, rollout: dict[str, Any]) -> list[str]:
        """Give every Service this rollout adopted its original selector back (the rollout is being
        deleted; the Services it created go by garbage collection). Returns their names."""
        ns, name = rollout["metadata"]["namespace"], rollout["metadata"]["name"]
        items = self._call("list", "services", ns, self.core.list_namespaced_service, ns,
                           label_selector=f"{LABEL_ROLLOUT}={name}").items
        released = []
        for svc in items:
            live = dict(self.api.sanitize_for_serialization(svc))
            body = ownership.release(live, rollout)
            if body is not None:
                # Sending only the original selector drops the label and annotation we applied.
                self._apply("services", ns, self.core.patch_namespaced_service, body, force=True)
                released.append(svc.metadata.name)
        return released

    def observe_route(self, namespace: str, name: str, rollout_namespace: str) -> RouteObservation | None:
        """The HTTPRoute's rules as stored, and the generation its gateway last accepted; None if absent."""
        try:
            route = self._call("get", "httproutes.gateway.networking.k8s.io", namespace,
                               self.custom.get_namespaced_custom_object, GATEWAY_GROUP, GATEWAY_VERSION, namespace,
                               "httproutes", name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        meta = route["metadata"]
        parents = (route.get("status") or {}).get("parents") or []
        accepted = [c.get("observedGeneration") or 0 for parent in parents for c in parent.get("conditions") or []
                    if c.get("type") == "Accepted" and c.get("status") == "True"]
        return RouteObservation(namespace=namespace, name=name, rules=tuple(route["spec"].get("rules") or ()),
                                resource_version=meta["resourceVersion"], rollout_namespace=rollout_namespace,
                                generation=meta.get("generation", 0), accepted_generation=max(accepted, default=None))

    def apply_route(self, intent: RouteIntent) -> None:
        """Server-side apply of the route's rules as field manager `modelrollout`.

        `spec.rules` is an atomic list in the Gateway API schema, so an apply owns all of it: the rules
        are the ones just read with only the router's weights (and header rule) changed, and the
        resourceVersion precondition makes a concurrent edit win (409: the next tick reads it again).
        force takes the list over from the manager that wrote it last (the user's kubectl)."""
        body = {"apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}", "kind": "HTTPRoute",
                "metadata": {"name": intent.name, "namespace": intent.namespace,
                             "resourceVersion": intent.resource_version},
                "spec": {"rules": [dict(r) for r in intent.rules]}}
        try:
            self._call("patch", "httproutes.gateway.networking.k8s.io", intent.namespace,
                       self.custom.patch_namespaced_custom_object, GATEWAY_GROUP, GATEWAY_VERSION, intent.namespace,
                       "httproutes", intent.name, body, field_manager=FIELD_MANAGER, force=True,
                       _content_type=APPLY_PATCH)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def ensure_validation_job(self, rollout: dict[str, Any], spec: RolloutSpec, intent: ValidationJobIntent) -> None:
        """Create the validation Job once; each run has its own name, so an existing one is that run's."""
        ns = rollout["metadata"]["namespace"]
        body = validationjob.validation_job(rollout, spec, intent)
        try:
            self._call("create", "jobs.batch", ns, self.batch.create_namespaced_job, ns, body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def ensure_retrain_job(self, rollout: dict[str, Any], spec: RolloutSpec, intent: RetrainJobIntent) -> None:
        """Create the retraining Job once; each has its own name, so an existing one is this run's."""
        ns = rollout["metadata"]["namespace"]
        try:
            self._call("create", "jobs.batch", ns, self.batch.create_namespaced_job, ns,
                       retrainjob.retrain_job(rollout, spec, intent))
        except ApiException as exc:
            if exc.status != 409:
                raise

    def delete_validation_job(self, namespace: str, name: str) -> None:
        """Stop a validation run nothing waits for; its pod goes with it (Background propagation)."""
        options = kubernetes.client.V1DeleteOptions(propagation_policy="Background")
        try:
            self._call("delete", "jobs.batch", namespace, self.batch.delete_namespaced_job, name, namespace,
                       body=options)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def observe_job(self, namespace: str, name: str) -> ValidationJobObservation:
        """A Job of the rollout (validation or retraining) and its pods, read back."""
        return self.observe_validation_job(namespace, name)

    def observe_validation_job(self, namespace: str, name: str) -> ValidationJobObservation:
        job = self._get_or_none("jobs.batch", namespace, self.batch.read_namespaced_job, name)
        if job is None:
            return validationjob.job_observation(name, None, [])
        pods = self._call("list", "pods", namespace, self.core.list_namespaced_pod, namespace,
                          label_selector=f"job-name={name}").items
        return validationjob.job_observation(name, job, pods)

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._call("patch", "modelrollouts/status", namespace, self.custom.patch_namespaced_custom_object_status,
                   GROUP, VERSION, namespace, PLURAL, name, {"status": patch}, _content_type=MERGE_PATCH)

    def post_event(self, rollout: dict[str, Any], event: Event, name: str | None = None) -> None:
        """Post through the events API (see kubeevents: idempotent by name, repeats as a series)."""
        ns = rollout["metadata"]["namespace"]
        self._call("create", "events.k8s.io events", ns, self.recorder.post, rollout, event, name)

    def forget(self, uid: str) -> None:
        self.recorder.forget(uid)

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (a CA bundle or a bearer token the metric source sends).
        KeyError when the Secret lacks the key; ApiException 404 when there is no such Secret."""
        secret = self._call("get", "secrets", namespace, self.core.read_namespaced_secret, name, namespace)
        data = secret.data or {}
        if key not in data:
            raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode("utf-8").strip()
