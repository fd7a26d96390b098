#!/usr/bin/env bash
# Downloads (or finds) the wheels that the images' package sets install (operator/pyproject.toml,
# serving/pyproject.toml, serving/contract/pyproject.toml, pinned by constraints.txt) into
# $MODELROLLOUT_CACHE/wheelhouse-<digest of those files>, so tests/packaging/test_image_sets.py can build
# each image's virtualenv offline (inside the test namespace there is no network). Idempotent; prints the
# directory on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}
PY=${PY:-python3}
KEY=$(cat constraints.txt operator/pyproject.toml serving/pyproject.toml serving/contract/pyproject.toml \
      | sha256sum | cut -c1-12)
DIR=$CACHE/wheelhouse-$KEY

log() { printf '[build-wheelhouse] %s\n' "$*" >&2; }

if [ -f "$DIR/.complete" ]; then
  log "cached in $DIR"
  echo "$DIR"
  exit 0
fi
# The distributions' own requirements, without the project's local ones, and the build backend.
mapfile -t REQS < <("$PY" - <<'PYEOF'
import tomllib
for path in ("operator/pyproject.toml", "serving/pyproject.toml", "serving/contract/pyproject.toml"):
    with open(path, "rb") as f:
        project = tomllib.load(f)
    for req in project["project"]["dependencies"]:
        if not req.startswith("modelrollout-"):
            print(req)
    for req in project["build-system"]["requires"]:
        print(req)
PYEOF
)
log "downloading ${#REQS[@]} requirements' wheels into $DIR..."
rm -rf "$DIR.tmp"
"$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$DIR.tmp" -c constraints.txt "${REQS[@]}"
rm -rf "$DIR"
mv "$DIR.tmp" "$DIR"
touch "$DIR/.complete"
log "ready"
echo "$DIR"
