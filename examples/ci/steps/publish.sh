#!/usr/bin/env bash
# Publish one trained model (the folder train.sh wrote) as MODEL_NAME/VERSION in the model store:
# model.skops, its drift reference (model.drift.json), model.json and the holdout rows are uploaded with their sha256 (the store refuses a body
# that does not match and never overwrites a published version), then read back and checked again.
# Writes MODEL_DIR/published.env (MODEL_VERSION, MODEL_URI, MODEL_DIGEST, DRIFT_REFERENCE_DIGEST, HOLDOUT_URI)
# for deploy.sh.
#   STORE_TOKEN=... STORE_UPLOAD_URL=http://127.0.0.1:18080 examples/ci/steps/publish.sh MODEL_DIR VERSION
# STORE_UPLOAD_URL is how this machine reaches the store; STORE_URL (default http://model-store) is how
# the serving pods do, and goes into the ModelRollout.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 MODEL_DIR VERSION" >&2; exit 2; }
dir=$1 version=$2 name=${MODEL_NAME:-fraud}
upload=${STORE_UPLOAD_URL:?set STORE_UPLOAD_URL (how this machine reaches the store)}
served=${STORE_URL:-http://model-store}
: "${STORE_TOKEN:?set STORE_TOKEN}"
[[ "${version}" =~ ^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$ ]] \
  || { echo "publish: version '${version}' is not a valid spec.model.version" >&2; exit 2; }

put() {  # put FILE: upload it, then fetch it back and compare
  local file=$1 path sha
  path="${name}/${version}/$(basename "$1")"
  sha=$(sha256sum "${file}" | cut -d' ' -f1)
  curl -fsS --retry 3 -T "${file}" -H "X-Checksum-Sha256: ${sha}" \
    -H @<(printf 'Authorization: Bearer %s\n' "${STORE_TOKEN}") "${upload}/${path}" >&2
  [[ "$(curl -fsS "${upload}/${path}" | sha256sum | cut -d' ' -f1)" == "${sha}" ]] \
    || { echo "publish: ${upload}/${path} does not read back as sha256:${sha}" >&2; exit 1; }
  echo "${sha}"
}

sha=$(put "${dir}/model.skops")
recorded=$("${PYTHON:-python3}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "${dir}/model.json")
[[ "sha256:${sha}" == "${recorded}" ]] || { echo "publish: model.skops is not the file model.json describes" >&2; exit 1; }
reference=$(put "${dir}/model.drift.json")
recorded=$("${PYTHON:-python3}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["drift_reference"]["digest"])' \
  "${dir}/model.json")
[[ "sha256:${reference}" == "${recorded}" ]] \
  || { echo "publish: model.drift.json is not the reference model.json describes" >&2; exit 1; }
for file in model.json holdout.csv holdout.json; do put "${dir}/${file}" >/dev/null; done
{
  printf 'MODEL_VERSION=%q\n' "${version}"
  printf 'MODEL_URI=%q\n' "${served}/${name}/${version}/model.skops"
  printf 'MODEL_DIGEST=%q\n' "sha256:${sha}"
  printf 'DRIFT_REFERENCE_DIGEST=%q\n' "sha256:${reference}"
  printf 'HOLDOUT_URI=%q\n' "${served}/${name}/${version}/holdout.json"
} > "${dir}/published.env"
echo "published ${name} version ${version}: ${served}/${name}/${version}/model.skops sha256:${sha}"
