#!/usr/bin/env python3
"""The GitHub release's notes: what was published, by digest, and how to check it.

    OPERATOR_DIGEST=sha256:.. SERVER_DIGEST=sha256:.. CHART_DIGEST=sha256:.. GITHUB_REPOSITORY=o/n \\
        hack/release/release_notes.py v1.2.3 > notes.md

Every digest comes from the job that pushed it (the workflow's job outputs); a missing or malformed one
stops the release instead of publishing notes that point nowhere. Exit 0, 1 refused (stderr says why).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_release import DIGEST, Refused, version_of  # a sibling script, not a package

IMAGE_REPO = "ghcr.io/modelrollout"
CHART = "ghcr.io/modelrollout/charts/modelrollout"
ISSUER = "https://token.actions.githubusercontent.com"


def _digest(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not DIGEST.fullmatch(value):
        raise Refused(f"{name}={value!r} is not sha256:<64 lowercase hex>")
    return value


def notes(tag: str, env: Mapping[str, str]) -> str:
    version = version_of(tag)
    operator, server, chart = (_digest(env, n) for n in ("OPERATOR_DIGEST", "SERVER_DIGEST", "CHART_DIGEST"))
    repo = env.get("GITHUB_REPOSITORY") or "modelrollout/modelrollout"
    identity = f"https://github.com/{repo}/.github/workflows/release.yml@refs/tags/{tag}"
    return f"""## modelrollout {version}

| artifact | reference |
|---|---|
| operator image (linux/amd64, linux/arm64) | `{IMAGE_REPO}/operator:{version}@{operator}` |
| model server image (linux/amd64, linux/arm64) | `{IMAGE_REPO}/modelserver:{version}@{server}` |
| Helm chart (operator pinned by digest) | `oci://{CHART}` version `{version}`, `{chart}` |
| Python | `modelrollout-operator`, `modelrollout-server`, `modelrollout-contract` {version} on PyPI |
| kubectl plugin | `pipx install modelrollout-operator=={version}`, or krew: `modelrollout.yaml` below |

```sh
helm install modelrollout oci://{CHART} --version {version} -n modelrollout-system --create-namespace
```

Each image and the chart are signed with cosign (keyless, by this repository's release workflow) and
each image carries its SPDX SBOM as a signed attestation:

```sh
cosign verify {IMAGE_REPO}/operator@{operator} \\
  --certificate-identity {identity} \\
  --certificate-oidc-issuer {ISSUER}
cosign verify-attestation --type spdxjson {IMAGE_REPO}/operator@{operator} \\
  --certificate-identity {identity} \\
  --certificate-oidc-issuer {ISSUER}
```

To run this release's model server by digest, set `spec.serving.image: {IMAGE_REPO}/modelserver@{server}`
(a ModelRollout that names no image runs `{IMAGE_REPO}/modelserver:{version}`).
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: release_notes.py TAG (digests in OPERATOR_DIGEST, SERVER_DIGEST, CHART_DIGEST)",
              file=sys.stderr)
        return 2
    try:
        print(notes(args[0], os.environ), end="")
    except Refused as refused:
        print(f"release_notes: {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
