#!/usr/bin/env bash
# Builds (or finds) the local cluster's Gateway API data plane: Traefik v3 from the Go module proxy
# (its Kubernetes Gateway provider serves HTTPRoute weights and header matches), and the Gateway
# API CRDs (standard channel) from the sigs.k8s.io/gateway-api module. Idempotent: what exists is
# skipped. Prints the directory holding `traefik` and `crds/` on its last line.
#
# Why v3.6.12 and not v3.7.x: v3.7 imports github.com/traefik/traefik/dynamic/ext, a nested module
# that its module zip leaves out and the Go module proxy does not serve, and its ACME (lego v5) DNS
# providers need module versions the proxy refuses; every module v3.6.12 needs is served.
set -euo pipefail

TRAEFIK_VERSION=${TRAEFIK_VERSION:-v3.6.12}  # keep equal to cluster/localcluster/binaries.py
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.6.3}
CACHE=${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}
OUT=$CACHE/traefik-$TRAEFIK_VERSION
BIN=$OUT/bin
CRDS=$OUT/crds

log() { printf '[build-gateway] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go is not installed; install Go >= 1.26 (it builds Traefik)"; exit 1; }
mkdir -p "$BIN" "$CRDS"

# The module cache is read-only: build in a writable copy of the module so its own go.mod (with
# its replace directives, which a wrapper module would ignore) and go.sum apply as they do upstream.
module_dir() {
  go mod download -json "$1@$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

build_traefik() {
  [ -x "$BIN/traefik" ] && { log "traefik $TRAEFIK_VERSION: cached in $BIN"; return; }
  log "building traefik $TRAEFIK_VERSION from Go modules (15-40 minutes cold on 2 cores)..."
  local t0=$SECONDS src
  src=$(module_dir github.com/traefik/traefik/v3 "$TRAEFIK_VERSION")
  rm -rf "$OUT/src" && cp -r "$src" "$OUT/src" && chmod -R u+w "$OUT/src"
  # webui/static holds the generated dashboard (built by npm upstream, not in the module zip). The
  # zip keeps one placeholder file there, so go:embed compiles; make sure of it rather than rely on
  # it, since the dashboard is not used here (api.dashboard stays off).
  [ -n "$(ls -A "$OUT/src/webui/static" 2>/dev/null)" ] || { mkdir -p "$OUT/src/webui/static"; echo '<!-- no dashboard -->' > "$OUT/src/webui/static/index.html"; }
  # ACME DNS-01 providers (lego's registry of ~150 DNS APIs and their cloud SDKs) are a third of the
  # build and unused here (no certificates are issued on the local cluster): left out, so a DNS
  # challenge in this build fails with a message. Everything else is upstream Traefik.
  local acme=$OUT/src/pkg/provider/acme/provider.go
  sed -i '/"github.com\/go-acme\/lego\/v4\/providers\/dns"/d' "$acme"
  sed -i 's|provider, err = dns.NewDNSChallengeProviderByName(p.DNSChallenge.Provider)|provider, err = nil, fmt.Errorf("ACME DNS challenge provider %s: not built into this Traefik (hack/build-gateway.sh)", p.DNSChallenge.Provider)|' "$acme"
  grep -q "not built into this Traefik" "$acme" || { log "could not leave out the ACME DNS providers in $acme"; exit 1; }
  (cd "$OUT/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
      -o "$BIN/traefik.tmp" ./cmd/traefik)
  mv "$BIN/traefik.tmp" "$BIN/traefik"
  rm -rf "$OUT/src"
  log "built in $((SECONDS - t0))s"
}

fetch_crds() {
  [ -f "$CRDS/.gateway-api-$GATEWAY_API_VERSION" ] && { log "Gateway API CRDs $GATEWAY_API_VERSION: cached"; return; }
  local src
  src=$(module_dir sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION")
  rm -f "$CRDS"/*.yaml
  cp "$src"/config/crd/standard/*.yaml "$CRDS/"
  chmod u+w "$CRDS"/*.yaml
  touch "$CRDS/.gateway-api-$GATEWAY_API_VERSION"
  log "Gateway API CRDs $GATEWAY_API_VERSION (standard channel) in $CRDS"
}

fetch_crds
build_traefik
echo "$OUT"
