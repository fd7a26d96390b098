#!/usr/bin/env bash
# Installs (or finds) KServe's Python model server, the `kserve` package 0.21.0, with scikit-learn and
# joblib in a virtualenv of its own under $MODELROLLOUT_CACHE/kserve-<version>/venv: the local cluster's
# `modelrollout/kserve-sklearn-predictor` image runs examples/kserve/predictor.py with it
# (cluster/localcluster/images.py). A separate virtualenv because kserve pins its own FastAPI, uvicorn,
# grpcio and python-dateutil. scikit-learn, joblib, numpy and scipy are pinned to constraints.txt so a
# model pickled by the tests loads unchanged. Idempotent; prints the venv's bin directory on its last line.
set -euo pipefail

KSERVE_VERSION=${KSERVE_VERSION:-0.21.0}
CACHE=${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}
PY=${PY:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$CACHE/kserve-$KSERVE_VERSION/venv

log() { printf '[build-kserve] %s\n' "$*" >&2; }

pins=$(grep -E '^(scikit-learn|joblib|numpy|scipy)==' "$ROOT/constraints.txt")
wanted=$(printf 'kserve==%s\n%s\n' "$KSERVE_VERSION" "$pins")
# The stamp holds what was installed: a changed pin in constraints.txt rebuilds.
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.installed" 2>/dev/null)" = "$wanted" ]; then
  log "kserve $KSERVE_VERSION: cached in $VENV"
  echo "$VENV/bin"
  exit 0
fi
log "installing kserve $KSERVE_VERSION + scikit-learn into $VENV (1.5 minutes on the 2-core build machine)..."
"$PY" -m venv --clear "$VENV"
# shellcheck disable=SC2086 # one requirement per word
"$VENV/bin/pip" install -q $wanted
"$VENV/bin/python" -c 'import kserve, sklearn, joblib; kserve.ModelServer'
printf '%s' "$wanted" > "$VENV/.installed"
log "kserve $KSERVE_VERSION ready"
echo "$VENV/bin"
