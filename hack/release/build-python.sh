#!/usr/bin/env bash
# Build the published Python distributions into DIR (default dist/): modelrollout-contract,
# modelrollout-operator (the operator and the kubectl-modelrollout plugin: `pipx install
# modelrollout-operator`) and modelrollout-server. The repository root's `modelrollout` is the
# development install (local cluster, tests) and is not published.
#   hack/release/build-python.sh [DIR]      (PY: the interpreter; build and twine are installed into it)
# modelrollout-contract is built as a wheel only: its pyproject takes its modules from ../modelserver
# (they live beside the server that writes the metrics), which an sdist cannot carry, so a wheel built
# from its sdist fails. Checks the operator wheel declares the plugin's console script.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR=${1:-dist}
PY=${PY:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check build==1.6.1 twine==7.0.0
rm -rf "$DIR"
"$PY" -m build --wheel --outdir "$DIR" serving/contract
"$PY" -m build --outdir "$DIR" operator
"$PY" -m build --outdir "$DIR" serving
# Not --strict: the distributions have no long description yet (their PyPI pages would be empty).
"$PY" -m twine check "$DIR"/*
"$PY" - "$DIR" <<'PYEOF'
import sys, zipfile
from pathlib import Path
[wheel] = Path(sys.argv[1]).glob("modelrollout_operator-*.whl")
with zipfile.ZipFile(wheel) as z:
    entry = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
    scripts = z.read(entry).decode()
if "kubectl-modelrollout = modelrollout.cli:main" not in scripts:
    sys.exit(f"{wheel.name} does not install kubectl-modelrollout:\n{scripts}")
print(f"{wheel.name}: installs kubectl-modelrollout")
PYEOF
ls -l "$DIR"
