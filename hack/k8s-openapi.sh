#!/usr/bin/env bash
# Finds (or downloads with `go mod download`) Kubernetes' OpenAPI v3 document of core/v1, which the CRD
# generator (python -m modelrollout.crdgen) inlines EnvVar, ResourceRequirements, Affinity, ... from.
# K8S_VERSION as in build-k8s.sh (and modelrollout.crdgen.coretypes). Prints the file's path.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
rel=api/openapi-spec/v3/api__v1_openapi.json
cache=$(go env GOMODCACHE 2>/dev/null || echo "$HOME/go/pkg/mod")
file=$cache/k8s.io/kubernetes@$K8S_VERSION/$rel
if [ ! -f "$file" ]; then
  command -v go >/dev/null || { echo "[k8s-openapi] go is not installed; install Go >= 1.26" >&2; exit 1; }
  echo "[k8s-openapi] downloading k8s.io/kubernetes@$K8S_VERSION from the Go module proxy..." >&2
  dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  file=$dir/$rel
fi
[ -f "$file" ] || { echo "[k8s-openapi] $file is missing" >&2; exit 1; }
echo "$file"
