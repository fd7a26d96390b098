#!/usr/bin/env bash
# Builds (or finds) kwok from the Go module proxy into $MODELROLLOUT_CACHE/kwok-<version>/bin.
# Idempotent: a cached binary is reused. Prints the directory that holds it on its last line.
#
# kwok fakes Nodes and the Pods bound to them (no processes): `make bench-operator` uses it to put
# hundreds of ModelRollouts' pods on a 2-core machine. kwok v0.8.0's go.mod asks for go >= 1.26.0.
# Built under `nice -n 19`: the machine is shared with test runs that must not starve.
#
# The kwok binary (unlike kwokctl) has no stages built in: it needs them as configuration. stages.yaml,
# beside bin/, joins the same module version's own "fast" stages (a node Ready at once, kept so by a lease;
# a pod Running and Ready at once, deleted at once) into one file for `kwok --config`.
set -euo pipefail

KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}

log() { printf '[build-kwok] %s\n' "$*" >&2; }

BIN=$CACHE/kwok-$KWOK_VERSION/bin
STAGES=$CACHE/kwok-$KWOK_VERSION/stages.yaml
if [ -x "$BIN/kwok" ] && [ -s "$STAGES" ]; then
  log "kwok: cached in $BIN"
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { log "go is not installed; install Go >= 1.26 (the Go toolchain builds kwok)"; exit 1; }
mkdir -p "$BIN"

log "building kwok $KWOK_VERSION from Go modules (a few minutes cold on 2 cores)..."
t0=$SECONDS
tmp=$(mktemp -d "$BIN/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# GOBIN into a scratch directory, moved in only once built, so a build cut half-way is never taken for a cached one.
CGO_ENABLED=0 GOBIN=$tmp nice -n 19 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
src=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  printf -- '---\n' >> "$tmp/stages.yaml"
  cat "$src/$stage.yaml" >> "$tmp/stages.yaml"
done
mv "$tmp/stages.yaml" "$STAGES"
mv "$tmp/kwok" "$BIN/"
log "built in $((SECONDS - t0))s"
echo "$BIN"
