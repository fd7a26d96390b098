#!/usr/bin/env bash
# Hand a file to later jobs as a step output (GitHub Actions only): NAME<<delimiter ... delimiter.
#   examples/ci/steps/github-output.sh NAME FILE
# The pull-request workflow passes the validation report this way to the job that comments, which
# checks out no code and runs none of the pull request's.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 NAME FILE" >&2; exit 2; }
: "${GITHUB_OUTPUT:?not on GitHub Actions}"
[[ -f "$2" ]] || { echo "github-output: $2 was not written (an earlier step failed before it)" >&2; exit 1; }
delimiter="EOF_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
{ echo "$1<<${delimiter}"; cat "$2"; echo; echo "${delimiter}"; } >> "${GITHUB_OUTPUT}"
