#!/usr/bin/env bash
# Regenerates hack/k8s/go.mod for a Kubernetes version: requires k8s.io/kubernetes and replaces every
# staging module that its own go.mod points at ./staging/ with the published v0.<minor>.<patch> tag.
# Usage: hack/k8s/gen-gomod.sh v1.36.3
set -euo pipefail
v=${1:?usage: $0 vX.Y.Z}
staging_v="v0.${v#v1.}"
cd "$(dirname "$0")"
gomod=$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
{
  echo "// Wrapper module that builds the Kubernetes control-plane binaries from the Go module proxy."
  echo "// k8s.io/kubernetes replaces its staging modules with local paths, which a dependent module ignores,"
  echo "// so every one is replaced here with its published tag. Regenerate with hack/k8s/gen-gomod.sh."
  echo "module modelrollout.dev/hack/k8s"
  echo
  echo "go 1.26.0"
  echo
  echo "require k8s.io/kubernetes $v"
  echo
  echo "replace ("
  grep "=> ./staging" "$gomod" | awk -v sv="$staging_v" '{print "\t"$1" => "$1" "sv}'
  echo ")"
} > go.mod
rm -f go.sum
echo "wrote go.mod with $(grep -c '=> ' go.mod) replaces; hack/build-k8s.sh fills go.sum on the next build" >&2
