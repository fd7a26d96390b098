#!/usr/bin/env bash
# Build the operator and model server images; with --load, also load them into the kind cluster.
#   hack/kind-images.sh [--load]        (make images / make kind-up)
# Needs a Docker engine: says so plainly when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-modelrollout}
REPO=${IMAGE_REPO:-ghcr.io/modelrollout}
VERSION=${VERSION:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/modelrollout/Chart.yaml)}

if ! command -v docker >/dev/null 2>&1; then
  echo "images: there is no Docker engine here ('docker' is not installed). Install Docker (or a" >&2
  echo "compatible engine) to build images; the local cluster path (make demo / make test) needs none." >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "images: 'docker' is installed but no Docker engine answers (is the daemon running, may this" >&2
  echo "user use it?). The local cluster path (make demo / make test) needs none." >&2
  exit 1
fi

build() {  # build <Dockerfile> <image>
  echo "[images] building $2 from $1"
  docker build -f "$1" -t "$2" \
    --build-arg "VERSION=${VERSION}" \
    --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
}

build operator/Dockerfile "${REPO}/operator:${VERSION}"
build serving/Dockerfile "${REPO}/modelserver:${VERSION}"

if [[ "${1:-}" == "--load" ]]; then
  for image in "${REPO}/operator:${VERSION}" "${REPO}/modelserver:${VERSION}"; do
    echo "[images] kind load docker-image ${image} --name ${CLUSTER}"
    kind load docker-image "${image}" --name "${CLUSTER}"
  done
fi
