#!/usr/bin/env bash
# Builds (or finds) prometheus and promtool from the Go module proxy into
# $MODELROLLOUT_CACHE/prometheus-<version>/bin. Idempotent: what exists is skipped.
# Prints the directory that holds both on its last line.
#
# Build tags: a Go module version carries no built web UI (the React app is built by npm in
# Prometheus's own release process), so `builtinassets` is left out: the binary then serves
# the UI from web/ui/static on disk, which nothing here uses (tests talk to the HTTP API).
# `remove_all_sd,enable_kubernetes_sd` keep only the kubernetes_sd discovery the local cluster
# uses, which drops the cloud SDKs (AWS, Azure, GCE, ...) and most of the build time.
set -euo pipefail

PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}   # Go module version of Prometheus 3.16.0
CACHE=${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}
here=$(cd "$(dirname "$0")" && pwd)

log() { printf '[build-prometheus] %s\n' "$*" >&2; }

BIN=$CACHE/prometheus-$PROMETHEUS_VERSION/bin
if [ -x "$BIN/prometheus" ] && [ -x "$BIN/promtool" ]; then
  log "prometheus, promtool: cached in $BIN"
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { log "go is not installed; install Go >= 1.26 (the Go toolchain builds Prometheus)"; exit 1; }
mkdir -p "$BIN"

# 3.16.0 from v0.316.0: the module's minor encodes the release's major+minor.
minor=${PROMETHEUS_VERSION#v0.}; minor=${minor%%.*}
patch=${PROMETHEUS_VERSION##*.}
release="${minor:0:1}.$((10#${minor:1})).$patch"
ver=github.com/prometheus/common/version
ldflags="-s -w -X $ver.Version=$release -X $ver.Revision=$PROMETHEUS_VERSION -X $ver.Branch=module"
ldflags="$ldflags -X $ver.BuildUser=modelrollout -X $ver.BuildDate=20260101-00:00:00"

log "building prometheus + promtool $release ($PROMETHEUS_VERSION) from Go modules (several minutes cold on 2 cores)..."
t0=$SECONDS
tmp=$(mktemp -d "$BIN/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$here/prometheus" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
    -tags netgo,remove_all_sd,enable_kubernetes_sd -ldflags "$ldflags" -o "$tmp/" \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool)
# Moved in only once both built, so a build cut half-way is never taken for a cached one.
mv "$tmp/prometheus" "$tmp/promtool" "$BIN/"
log "built in $((SECONDS - t0))s"
echo "$BIN"
