#!/usr/bin/env bash
# Create the kind cluster, build and load the images, install the chart, publish the example models.
#   hack/kind-up.sh                     (make kind-up)
# Needs docker, kind, kubectl and helm on PATH. Idempotent: an existing cluster is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-modelrollout}
NS=${EXAMPLES_NAMESPACE:-ml}
OPERATOR_NS=${OPERATOR_NAMESPACE:-modelrollout-system}
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && PY=.venv/bin/python

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "kind-up: '$tool' is not on PATH (see docs/install.md)" >&2; exit 1; }
done

if kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  echo "[kind-up] cluster ${CLUSTER} exists: reusing it"
else
  echo "[kind-up] creating cluster ${CLUSTER} (1 control plane, 2 workers)"
  kind create cluster --name "${CLUSTER}" --config kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-${CLUSTER}" >/dev/null

hack/kind-images.sh --load

echo "[kind-up] installing the chart into ${OPERATOR_NS}"
# pullPolicy Never: the images were loaded into the nodes, there is no registry to pull from.
helm upgrade --install modelrollout charts/modelrollout \
  --namespace "${OPERATOR_NS}" --create-namespace \
  --set image.pullPolicy=Never --wait --timeout 180s
kubectl -n "${OPERATOR_NS}" rollout status deployment/modelrollout --timeout=120s

echo "[kind-up] publishing the example models into namespace ${NS}"
kubectl create namespace "${NS}" --dry-run=client -o yaml | kubectl apply -f -
"${PY}" examples/models/publish.py store | kubectl -n "${NS}" apply -f -
kubectl -n "${NS}" rollout status deployment/model-store --timeout=180s

# A NodePort in front of the demo rollout's pods, mapped to http://localhost:8080 by kind-config.yaml.
kubectl -n "${NS}" apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: fraud-nodeport
spec:
  type: NodePort
  selector:
    modelrollout.dev/rollout: fraud
  ports:
    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
YAML
echo "[kind-up] ready. Next: make kind-e2e, or kubectl apply -n ${NS} -f examples/baseline.yaml"
