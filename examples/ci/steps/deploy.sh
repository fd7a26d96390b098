#!/usr/bin/env bash
# Point the ModelRollout at a published model: deploy/rollout.yaml filled in from MODEL_DIR/published.env
# and applied. The first apply creates the rollout (its version serves at once); each later one starts a
# canary of the new version beside the serving one.
#   NAMESPACE=ml MODEL_NAME=fraud examples/ci/steps/deploy.sh MODEL_DIR
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 MODEL_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
source "$1/published.env"
export MODEL_NAME=${MODEL_NAME:-fraud} MODEL_VERSION MODEL_URI MODEL_DIGEST DRIFT_REFERENCE_DIGEST
# shellcheck disable=SC2016 # the names envsubst may replace, unexpanded on purpose
envsubst '${MODEL_NAME} ${MODEL_VERSION} ${MODEL_URI} ${MODEL_DIGEST} ${DRIFT_REFERENCE_DIGEST}' \
  < "${here}/deploy/rollout.yaml" \
  | kubectl -n "${NAMESPACE:-ml}" apply -f -
