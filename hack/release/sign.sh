#!/usr/bin/env bash
# Sign an OCI artifact keylessly with cosign (the workflow's GitHub OIDC identity, recorded in Rekor),
# attach its SBOM as a signed attestation when one is given, and verify the signature against this
# repository's release workflow before the release goes on.
#   hack/release/sign.sh REF@sha256:DIGEST [SBOM.spdx.json]
# Signs the digest, never a tag: a tag can be moved to another image after signing.
set -euo pipefail

ref=${1:?usage: sign.sh REF@sha256:DIGEST [SBOM.spdx.json]}
sbom=${2:-}
[[ "${ref}" =~ @sha256:[0-9a-f]{64}$ ]] || { echo "sign: ${ref} is not REF@sha256:<64 hex>" >&2; exit 2; }
: "${GITHUB_REPOSITORY:?}" "${GITHUB_REF:?}"

cosign sign --yes "${ref}"
if [[ -n "${sbom}" ]]; then
  cosign attest --yes --type spdxjson --predicate "${sbom}" "${ref}"
fi
# What a user runs to check it (docs/release.md): the identity is this workflow at this tag.
cosign verify "${ref}" \
  --certificate-identity "https://github.com/${GITHUB_REPOSITORY}/.github/workflows/release.yml@${GITHUB_REF}" \
  --certificate-oidc-issuer https://token.actions.githubusercontent.com > /dev/null
echo "sign: ${ref} signed and verified${sbom:+, SBOM ${sbom} attested}"
