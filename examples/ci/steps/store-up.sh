#!/usr/bin/env bash
# Start the model store (deploy/store.yaml) in NAMESPACE and wait until it answers. STORE_TOKEN (at least
# 16 characters) becomes the upload token; it goes to kubectl on stdin, never on a command line.
#   STORE_TOKEN=... NAMESPACE=ml examples/ci/steps/store-up.sh
# TRAFFIC_SCRIPT (default examples/models/traffic.py) is shipped beside the store for steps/traffic.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ns=${NAMESPACE:-ml}
: "${STORE_TOKEN:?set STORE_TOKEN, the token uploads must carry}"
traffic=${TRAFFIC_SCRIPT:-${here}/../models/traffic.py}

kubectl create namespace "${ns}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
printf '%s' "${STORE_TOKEN}" | kubectl -n "${ns}" create secret generic model-store-token \
  --from-file=token=/dev/stdin --dry-run=client -o yaml | kubectl -n "${ns}" apply -f -
kubectl -n "${ns}" create configmap model-store-code --from-file=store.py="${here}/deploy/store.py" \
  --from-file=traffic.py="${traffic}" --dry-run=client -o yaml | kubectl -n "${ns}" apply -f -
kubectl -n "${ns}" apply -f "${here}/deploy/store.yaml"
kubectl -n "${ns}" rollout status deployment/model-store --timeout="${STORE_TIMEOUT:-180s}"
