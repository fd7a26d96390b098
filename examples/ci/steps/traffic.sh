#!/usr/bin/env bash
# Staging only (the kind pipeline): requests and ground-truth labels for MODEL_NAME's Service from the
# holdout rows published with MODEL_DIR, so a canary has something to be judged on. Skip it on a cluster
# with real clients.
#   NAMESPACE=ml MODEL_NAME=fraud examples/ci/steps/traffic.sh MODEL_DIR
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 MODEL_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
ns=${NAMESPACE:-ml}
# shellcheck source=/dev/null
source "$1/published.env"
export MODEL_NAME=${MODEL_NAME:-fraud} HOLDOUT_URI TRAFFIC_RATE=${TRAFFIC_RATE:-20}
# shellcheck disable=SC2016 # the names envsubst may replace, unexpanded on purpose
envsubst '${MODEL_NAME} ${HOLDOUT_URI} ${TRAFFIC_RATE}' < "${here}/deploy/traffic.yaml" | kubectl -n "${ns}" apply -f -
kubectl -n "${ns}" rollout status "deployment/traffic-${MODEL_NAME}" --timeout="${TRAFFIC_TIMEOUT:-120s}"
