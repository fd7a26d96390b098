"""Publish the example models in a cluster and point the example rollouts at them.

    python examples/models/publish.py store   | kubectl apply -n ml -f -     # the model store
    python examples/models/publish.py traffic --service fraud --model fraud | kubectl apply -n ml -f -
    kubectl -n ml exec deploy/model-store -- cat /srv/models/manifest.json > manifest.json
    python examples/models/publish.py render examples/canary.yaml --manifest manifest.json | kubectl apply -n ml -f -

`store` prints a ConfigMap holding train.py and traffic.py, and a `model-store` Deployment + Service:
the pod trains the example models at start (deterministic seeds, ~5 s) into an emptyDir and serves
them over HTTP on port 80 of Service `model-store`. Training in the pod instead of shipping files
avoids ConfigMap's 1 MiB limit (rf.joblib alone is 0.8 MiB) and needs no registry or volume, so the
same manifest works on kind and on the local cluster.

`render` writes the digests the store really produced into an example (the model's, and its drift reference's
when the example names one): the committed examples carry
the digests of the pinned library versions (constraints.txt), but a different scikit-learn, numpy
or CPU can change a model's bytes, and the server refuses a file whose digest differs. `--store`
replaces the `http://model-store` base of the model URIs (for a store elsewhere, or reached by IP).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGE = "ghcr.io/modelrollout/modelserver:0.1.0"
STORE_URL = "http://model-store"
SCRIPTS = ("train.py", "traffic.py")
# The restricted Pod Security profile, as the operator's own pods.
SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
POD_IP = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def _deployment(name: str, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "modelrollout-examples"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"securityContext": SECURITY, **container}], "volumes": volumes,
                     "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 5}}}}


def store_manifests(image: str = DEFAULT_IMAGE) -> list[dict[str, Any]]:
    """ConfigMap (scripts) + Deployment + Service `model-store` (port 80 -> 8080)."""
    scripts = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "model-store-scripts"},
               "data": {name: (HERE / name).read_text() for name in SCRIPTS}}
    # Bind the pod IP, not 0.0.0.0: on the local cluster all pods share one network namespace.
    run = ('python /opt/model-store/train.py /srv/models > /srv/models/.train.log '
           '&& exec python -m http.server 8080 --bind "$POD_IP" --directory /srv/models')
    container = {
        "name": "files", "image": image, "command": ["sh", "-c", run],
        "env": [POD_IP, {"name": "TMPDIR", "value": "/srv/models"}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "scripts", "mountPath": "/opt/model-store", "readOnly": True},
                         {"name": "models", "mountPath": "/srv/models"}],
    }
    volumes = [{"name": "scripts", "configMap": {"name": "model-store-scripts"}},
               {"name": "models", "emptyDir": {"sizeLimit": "64Mi"}}]
    deployment = _deployment("model-store", container, volumes)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "model-store"},
               "spec": {"selector": deployment["spec"]["selector"]["matchLabels"],
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    return [scripts, deployment, service]


def traffic_manifests(service: str, model: str, image: str = DEFAULT_IMAGE, rate: float = 20,
                      revenue: bool = False) -> list[dict[str, Any]]:
    """A Deployment `traffic-<service>` sending requests and feedback labels (and `revenue` outcomes) to
    http://<service>."""
    args = ["--url", f"http://{service}", "--model", model, "--holdout", f"{STORE_URL}/holdout-classification.json",
            "--rate", str(rate), "--seconds", "86400", *(["--revenue"] if revenue else [])]
    container = {"name": "traffic", "image": image, "command": ["python", "/opt/model-store/traffic.py", *args],
                 "volumeMounts": [{"name": "scripts", "mountPath": "/opt/model-store", "readOnly": True}]}
    volumes = [{"name": "scripts", "configMap": {"name": "model-store-scripts"}}]
    return [_deployment(f"traffic-{service}", container, volumes)]


def load_manifest(source: str) -> dict[str, dict[str, Any]]:
    """train.py's manifest.json (a file or URL) as {file name: entry}."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:
            entries = json.load(response)
    else:
        entries = json.loads(Path(source).read_text())
    return {e["file"]: e for e in entries}


def render(example: dict[str, Any], manifest: dict[str, dict[str, Any]], store: str = STORE_URL) -> dict[str, Any]:
    """The example with the store's real digest and base URL.

    >>> ex = {"spec": {"model": {"uri": "http://model-store/lr.joblib", "digest": "sha256:old"}}}
    >>> render(ex, {"lr.joblib": {"digest": "sha256:new"}}, "http://10.96.0.9")["spec"]["model"]
    {'uri': 'http://10.96.0.9/lr.joblib', 'digest': 'sha256:new'}
    >>> ex["spec"]["model"]["driftReferenceDigest"] = "sha256:oldref"  # and the drift reference's, when listed
    >>> render(ex, {"lr.joblib": {"digest": "sha256:new", "drift_reference": {"digest": "sha256:ref"}}}
    ...        )["spec"]["model"]["driftReferenceDigest"]
    'sha256:ref'
    >>> render({"kind": "HTTPRoute", "spec": {"rules": []}}, {})  # other documents pass unchanged
    {'kind': 'HTTPRoute', 'spec': {'rules': []}}
    """
    if example.get("kind", "ModelRollout") != "ModelRollout":
        return example
    model = example["spec"]["model"]
    uri: str = model["uri"]
    if not uri.startswith(STORE_URL + "/"):
        raise ValueError(f"{uri}: not a model of the example store ({STORE_URL}/...)")
    file = uri[len(STORE_URL) + 1:]
    if file not in manifest:
        raise ValueError(f"{file}: not in the store's manifest (has {', '.join(sorted(manifest))})")
    out = json.loads(json.dumps(example))
    out["spec"]["model"].update(uri=f"{store.rstrip('/')}/{file}", digest=manifest[file]["digest"])
    reference = manifest[file].get("drift_reference")
    if "driftReferenceDigest" in model and reference:
        out["spec"]["model"]["driftReferenceDigest"] = reference["digest"]
    return dict(out)


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (the scripts in the ConfigMap) as `|` blocks, so `kubectl get -o yaml` reads."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_ReadableDumper.add_representer(str, _str)


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_ReadableDumper, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    store = sub.add_parser("store", help="print the model store manifests")
    store.add_argument("--image", default=DEFAULT_IMAGE)
    traffic = sub.add_parser("traffic", help="print a traffic generator Deployment")
    traffic.add_argument("--service", required=True)
    traffic.add_argument("--model", required=True)
    traffic.add_argument("--image", default=DEFAULT_IMAGE)
    traffic.add_argument("--rate", type=float, default=20)
    traffic.add_argument("--revenue", action="store_true", help="post a simulated revenue outcome with each label")
    rend = sub.add_parser("render", help="print an example with the store's digests")
    rend.add_argument("example", type=Path)
    rend.add_argument("--manifest", required=True, help="manifest.json of the store (file or URL)")
    rend.add_argument("--store", default=STORE_URL, help="base URL of the store (default: the Service by name)")
    args = parser.parse_args(argv)
    if args.command == "store":
        sys.stdout.write(_dump(store_manifests(args.image)))
    elif args.command == "traffic":
        sys.stdout.write(_dump(traffic_manifests(args.service, args.model, args.image, args.rate, args.revenue)))
    else:
        manifest = load_manifest(args.manifest)
        docs = [render(d, manifest, args.store) for d in yaml.safe_load_all(args.example.read_text()) if d]
        sys.stdout.write(_dump(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
