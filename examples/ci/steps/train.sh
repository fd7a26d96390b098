#!/usr/bin/env bash
# Train the model of one checkout: PROJECT is the folder holding model/train.py and model/params.yaml
# (examples/ci of a checkout), OUT receives model.skops, model.json (its digest), holdout.csv/.json.
#   examples/ci/steps/train.sh PROJECT OUT
# Both pipelines train twice, the baseline from the target branch's checkout and the candidate from
# this commit's: fixed seeds make the baseline the very model main published.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 PROJECT OUT" >&2; exit 2; }
project=$1 out=$2
"${PYTHON:-python3}" "${project}/model/train.py" --params "${project}/model/params.yaml" --out "${out}"
