#!/usr/bin/env bash
# Wait for the rollout's outcome and make it the job's: `kubectl modelrollout status --timeout` exits 0
# when the spec's version is promoted (Healthy), 1 when it was rolled back or failed, 2 on timeout.
# On anything but 0 the last line says why, from the rollout's status (on GitHub also as an error annotation).
#   NAMESPACE=ml MODEL_NAME=fraud ROLLOUT_TIMEOUT=10m examples/ci/steps/wait.sh
set -euo pipefail
name=${MODEL_NAME:-fraud} ns=${NAMESPACE:-ml}
set +e
kubectl modelrollout status "${name}" -n "${ns}" --timeout "${ROLLOUT_TIMEOUT:-10m}"
status=$?
set -e
if [[ ${status} -ne 0 ]]; then
  why=$(kubectl -n "${ns}" get modelrollout "${name}" \
    -o jsonpath='{.status.phase} (version {.spec.model.version}, stable {.status.stableVersion}): {.status.message}' \
    2>&1 || true)
  echo "rollout ${ns}/${name} did not promote (exit ${status}): ${why}"
  [[ -z "${GITHUB_ACTIONS:-}" ]] || echo "::error title=rollout ${name} not promoted::${why//$'\n'/ }"
fi
exit "${status}"
