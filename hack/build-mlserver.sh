#!/usr/bin/env bash
# Installs (or finds) MLServer 1.7.1 with its scikit-learn runtime in a virtualenv of its own under
# $MODELROLLOUT_CACHE/mlserver-<version>/venv: the local cluster's `seldonio/mlserver` image runs it
# (cluster/localcluster/images.py). A separate virtualenv because MLServer pins its own FastAPI,
# pydantic and uvicorn. Idempotent; prints the venv's bin directory on its last line.
set -euo pipefail

MLSERVER_VERSION=${MLSERVER_VERSION:-1.7.1}
CACHE=${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}
PY=${PY:-python3}
VENV=$CACHE/mlserver-$MLSERVER_VERSION/venv

log() { printf '[build-mlserver] %s\n' "$*" >&2; }

if [ -x "$VENV/bin/mlserver" ] && [ -f "$VENV/.installed" ]; then
  log "mlserver $MLSERVER_VERSION: cached in $VENV"
  echo "$VENV/bin"
  exit 0
fi
log "installing mlserver $MLSERVER_VERSION + mlserver-sklearn into $VENV (about a minute)..."
"$PY" -m venv --clear "$VENV"
# uvloop 0.22 dropped a loop policy API MLServer 1.7.1 still calls.
"$VENV/bin/pip" install -q "mlserver==$MLSERVER_VERSION" "mlserver-sklearn==$MLSERVER_VERSION" "uvloop<0.22"
"$VENV/bin/mlserver" --help >/dev/null
touch "$VENV/.installed"
log "mlserver $MLSERVER_VERSION ready"
echo "$VENV/bin"
