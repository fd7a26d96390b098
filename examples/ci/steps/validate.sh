#!/usr/bin/env bash
# Judge the candidate against the baseline with `modelrollout validate` (docs/validation.md) on the
# BASELINE's held-out rows, so a change cannot move the rows it is judged on. Writes REPORT/validation-report.md
# (the pull-request comment) and REPORT/validation-report.json, prints the Markdown, and exits as
# validate does: 0 every check passed, 1 a check failed (the report names it), 2 a usage error.
#   examples/ci/steps/validate.sh BASELINE CANDIDATE REPORT [CONFIG]
# CONFIG defaults to model/validation.yaml beside this script's folder.
set -euo pipefail
[[ $# -ge 3 && $# -le 4 ]] || { echo "usage: $0 BASELINE CANDIDATE REPORT [CONFIG]" >&2; exit 2; }
baseline=$1 candidate=$2 report=$3
config=${4:-$(dirname "$0")/../model/validation.yaml}
digest() { "${PYTHON:-python3}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$1/model.json"; }

mkdir -p "${report}"
set +e
modelrollout validate \
  --baseline "${baseline}/model.skops" --baseline-digest "$(digest "${baseline}")" \
  --candidate "${candidate}/model.skops" --candidate-digest "$(digest "${candidate}")" \
  --data "${baseline}/holdout.csv" --config "${config}" \
  --json "${report}/validation-report.json" > "${report}/validation-report.md"
status=$?
set -e
cat "${report}/validation-report.md"
[[ -z "${GITHUB_STEP_SUMMARY:-}" ]] || cat "${report}/validation-report.md" >> "${GITHUB_STEP_SUMMARY}"
exit "${status}"
