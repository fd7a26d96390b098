#!/usr/bin/env bash
# Install kind, kubectl and helm into DIR (default: $RUNNER_TEMP/bin or ~/.local/bin), each download
# checked against the sha256 pinned below before it is made executable: a tampered or truncated file
# stops the pipeline instead of running.
#   examples/ci/steps/install-tools.sh [DIR]
# On GitHub Actions DIR is added to the PATH of the following steps. Linux x86-64 only.
#
# Where each pinned sha256 comes from (the release pages could not be reached where this was written;
# each value is the publisher's checksum as recorded by another project that verifies it, and the
# first run on a runner checks it against the real download):
#   kind v0.29.0    kubernetes-sigs/kind release asset kind-linux-amd64(.sha256sum), as pinned in
#                   f110/mono build/rules/kind/assets.bzl
#   kubectl v1.32.1 https://dl.k8s.io/release/v1.32.1/bin/linux/amd64/kubectl.sha256, as committed in
#                   argoproj/argo-cd hack/installers/checksums/ (fetched by its add-kubectl-checksums.sh)
#   helm v3.18.4    https://get.helm.sh/helm-v3.18.4-linux-amd64.tar.gz.sha256sum, as committed in
#                   argoproj/argo-cd hack/installers/checksums/ (fetched by its add-helm-checksums.sh)
# To move a version, take the new value from the project's own .sha256/.sha256sum file, never from the
# download itself.
set -euo pipefail

KIND_VERSION=v0.29.0
KIND_SHA256=c72eda46430f065fb45c5f70e7c957cc9209402ef309294821978677c8fb3284
KUBECTL_VERSION=v1.32.1
KUBECTL_SHA256=e16c80f1a9f94db31063477eb9e61a2e24c1a4eee09ba776b029048f5369db0c
HELM_VERSION=v3.18.4
HELM_SHA256=f8180838c23d7c7d797b208861fecb591d9ce1690d8704ed1e4cb8e2add966c1

# fetch_verified URL SHA256 DEST: DEST exists afterwards only if the download's sha256 is SHA256.
fetch_verified() {
  local url=$1 sha=$2 dest=$3 part
  part=$(mktemp "${dest}.part.XXXXXX")
  if ! curl -fsSL --retry 3 --proto '=https,file' -o "${part}" "${url}"; then
    rm -f "${part}"; echo "install-tools: cannot download ${url}" >&2; return 1
  fi
  if ! echo "${sha}  ${part}" | sha256sum --check --status; then
    echo "install-tools: ${url}: sha256 $(sha256sum "${part}" | cut -d' ' -f1), expected ${sha}" >&2
    rm -f "${part}"; return 1
  fi
  mv "${part}" "${dest}"
}

main() {
  local dir=${1:-${RUNNER_TEMP:+${RUNNER_TEMP}/bin}}
  dir=${dir:-${HOME}/.local/bin}
  local tmp
  mkdir -p "${dir}"
  tmp=$(mktemp -d)
  trap 'rm -rf "${tmp}"' RETURN
  fetch_verified "https://kind.sigs.k8s.io/dl/${KIND_VERSION}/kind-linux-amd64" "${KIND_SHA256}" "${dir}/kind"
  fetch_verified "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl" "${KUBECTL_SHA256}" \
    "${dir}/kubectl"
  fetch_verified "https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz" "${HELM_SHA256}" "${tmp}/helm.tgz"
  tar -xzf "${tmp}/helm.tgz" -C "${tmp}" linux-amd64/helm
  mv "${tmp}/linux-amd64/helm" "${dir}/helm"
  chmod 0755 "${dir}/kind" "${dir}/kubectl" "${dir}/helm"
  [[ -z "${GITHUB_PATH:-}" ]] || echo "${dir}" >> "${GITHUB_PATH}"
  "${dir}/kind" version && "${dir}/kubectl" version --client && "${dir}/helm" version --short
}

# Sourced (tests/unit/test_ci_workflows.py), only the functions are defined.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
