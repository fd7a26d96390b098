#!/usr/bin/env bash
# Delete the kind cluster made by hack/kind-up.sh (and everything in it).
#   hack/kind-down.sh                   (make kind-down)
set -euo pipefail
CLUSTER=${KIND_CLUSTER:-modelrollout}
if ! command -v kind >/dev/null 2>&1; then
  echo "kind-down: 'kind' is not on PATH; nothing to delete" >&2
  exit 0
fi
kind delete cluster --name "${CLUSTER}"
