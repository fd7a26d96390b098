#!/usr/bin/env bash
# The examples on kind, end to end: baseline -> canary (promoted) -> bad model (rolled back).
#   hack/kind-e2e.sh                    (make kind-e2e; runs hack/kind-up.sh first)
# Exits non-zero, with the rollout described, when an outcome is not the expected one.
set -euo pipefail
cd "$(dirname "$0")/.."

NS=${EXAMPLES_NAMESPACE:-ml}
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
WORK=$(mktemp -d)
trap 'rm -rf "${WORK}"' EXIT

hack/kind-up.sh

fail() {
  echo "kind-e2e: FAILED: $*" >&2
  kubectl -n "${NS}" describe modelrollout fraud >&2 || true
  kubectl -n "${OPERATOR_NAMESPACE:-modelrollout-system}" logs deployment/modelrollout --tail=100 >&2 || true
  exit 1
}

# wait_for <phase> <stable version> <timeout seconds>: until the status is current and matches.
wait_for() {
  local deadline=$((SECONDS + $3)) got
  while (( SECONDS < deadline )); do
    got=$(kubectl -n "${NS}" get modelrollout fraud \
      -o jsonpath='{.status.phase}/{.status.stableVersion}/{.status.observedGeneration}/{.metadata.generation}' 2>/dev/null || true)
    IFS=/ read -r phase stable observed generation <<<"${got}"
    if [[ "${phase}" == "$1" && "${stable}" == "$2" && "${observed}" == "${generation}" ]]; then
      echo "[kind-e2e] fraud: ${phase}, stable version ${stable}"
      return 0
    fi
    sleep 3
  done
  fail "fraud did not reach $1 with stable version $2 within $3 s (last: ${got})"
}

# The store trained the models in its pod: take the digests it really produced.
kubectl -n "${NS}" exec deploy/model-store -- cat /srv/models/manifest.json > "${WORK}/manifest.json"
apply_example() {
  "${PY}" examples/models/publish.py render "examples/$1" --manifest "${WORK}/manifest.json" \
    | kubectl -n "${NS}" apply -f -
}

echo "[kind-e2e] step 1: baseline (version 1)"
kubectl -n "${NS}" delete modelrollout fraud --ignore-not-found --wait=true
apply_example baseline.yaml
wait_for Healthy 1 180

echo "[kind-e2e] starting traffic with feedback labels"
"${PY}" examples/models/publish.py traffic --service fraud --model fraud | kubectl -n "${NS}" apply -f -
kubectl -n "${NS}" rollout status deployment/traffic-fraud --timeout=120s

echo "[kind-e2e] step 2: canary of version 2 (expected: promoted)"
apply_example canary.yaml
wait_for Healthy 2 300

echo "[kind-e2e] step 3: canary of the bad version 3 (expected: rolled back)"
apply_example bad-model.yaml
wait_for RolledBack 2 300
message=$(kubectl -n "${NS}" get modelrollout fraud -o jsonpath='{.status.message}')
[[ "${message}" == *accuracy* ]] || fail "the rollback message does not name the accuracy check: ${message}"

echo "[kind-e2e] through the NodePort on the host:"
curl -fsS --max-time 5 http://localhost:8080/v2/models/fraud/ready && echo " (fraud ready)" \
  || fail "http://localhost:8080 (kind port mapping -> fraud-nodeport) did not answer"

kubectl -n "${NS}" delete deployment traffic-fraud --ignore-not-found
echo "[kind-e2e] PASSED: version 2 promoted, version 3 rolled back (${message})"
