#!/usr/bin/env bash
# Install helm into DIR (default $RUNNER_TEMP/bin) for the release workflow, checked against the sha256
# pinned in examples/ci/steps/install-tools.sh (one pin for every workflow: the publisher's
# helm-<version>-linux-amd64.tar.gz.sha256sum, as recorded there); a mismatch installs nothing and fails.
#   hack/release/install-helm.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=examples/ci/steps/install-tools.sh
source "${here}/../../examples/ci/steps/install-tools.sh"

dir=${1:-${RUNNER_TEMP:?set RUNNER_TEMP or pass DIR}/bin}
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
mkdir -p "${dir}"
fetch_verified "https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz" "${HELM_SHA256}" "${tmp}/helm.tgz"
tar -xzf "${tmp}/helm.tgz" -C "${tmp}" linux-amd64/helm
install -m 0755 "${tmp}/linux-amd64/helm" "${dir}/helm"
[[ -z "${GITHUB_PATH:-}" ]] || echo "${dir}" >> "${GITHUB_PATH}"
"${dir}/helm" version --short
