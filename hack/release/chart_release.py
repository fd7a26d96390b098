#!/usr/bin/env python3
"""Stamp the Helm chart for a release: Chart.yaml's version and appVersion from the git tag, and
values.yaml's image.digest from the operator image that the release workflow just pushed.

    hack/release/chart_release.py v1.2.3 sha256:<64 hex> [--chart charts/modelrollout]
    hack/release/chart_release.py v1.2.3          # only check the versions (the workflow's first step)

Edits the files in place line by line, so their comments stay, then reads them back with a YAML parser
and refuses to finish unless exactly the three fields changed (a line the patterns did not expect, say a
second `digest:` key, stops the release instead of shipping a chart that pulls another image).
Also checks that the Python distributions and the operator's default serving image carry the tag's
version (they are built from the same commit and published beside the chart): a tag that does not match
them is refused, nothing is rewritten.
Exit 0 done, 1 refused (the reason on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# SemVer 2.0 with the v of a git tag; helm wants the version without it.
TAG = re.compile(r"v(?P<version>(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The distributions published from this commit (the repository root's is development-only).
PYPROJECTS = ("operator/pyproject.toml", "serving/pyproject.toml", "serving/contract/pyproject.toml")
# The serving image a ModelRollout runs when it names none: the one released with this operator.
SERVING_IMAGE_DEFAULT = (
    "operator/modelrollout/workloads.py",
    re.compile(r'^DEFAULT_SERVING_IMAGE = "ghcr\.io/modelrollout/modelserver:(?P<tag>[^"]+)"$', re.M),
)


class Refused(Exception):
    """The release cannot be stamped as asked; the message says why."""


def version_of(tag: str) -> str:
    """`v1.2.3` -> `1.2.3`; anything that is not a v-prefixed SemVer is refused."""
    match = TAG.fullmatch(tag)
    if not match:
        raise Refused(f"tag {tag!r} is not v<semver> (v1.2.3, v1.2.3-rc.1)")
    return match["version"]


def check_distributions(root: Path, version: str) -> None:
    """Every published pyproject, the operator's pin of the contract and its default serving image
    carry `version`."""
    for rel in PYPROJECTS:
        with (root / rel).open("rb") as f:
            project = tomllib.load(f)["project"]
        if project["version"] != version:
            raise Refused(f"{rel}: version {project['version']}, the tag says {version}: bump it before tagging")
        for req in project.get("dependencies", []):
            pinned = re.fullmatch(r"modelrollout-contract==(\S+)", req)
            if pinned and pinned[1] != version:
                raise Refused(f"{rel}: pins {req}, the tag says {version}")
    rel, pattern = SERVING_IMAGE_DEFAULT
    match = pattern.search((root / rel).read_text())
    if not match or match["tag"] != version:
        found = match["tag"] if match else "no DEFAULT_SERVING_IMAGE line"
        raise Refused(f"{rel}: the default serving image is {found}, the tag says {version}")


def _replace_one(text: str, pattern: str, replacement: str, what: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != 1:
        raise Refused(f"{what}: expected one line to rewrite, found {count}")
    return new


def stamp_chart(chart: Path, version: str, digest: str) -> None:
    """Rewrite Chart.yaml (version, appVersion) and values.yaml (image.digest), then check the result."""
    if not DIGEST.fullmatch(digest):
        raise Refused(f"digest {digest!r} is not sha256:<64 lowercase hex>")
    chart_yaml, values_yaml = chart / "Chart.yaml", chart / "values.yaml"
    chart_text, values_text = chart_yaml.read_text(), values_yaml.read_text()
    new_chart = _replace_one(chart_text, r"^version:.*$", f"version: {version}", "Chart.yaml version")
    new_chart = _replace_one(new_chart, r"^appVersion:.*$", f'appVersion: "{version}"', "Chart.yaml appVersion")
    new_values = _replace_one(values_text, r'^(  digest:) *(""|sha256:[0-9a-f]{64})?\s*$',
                              rf'\1 "{digest}"', "values.yaml image.digest")
    # Checked before anything is written, so a refusal leaves both files as they were.
    before_values = _load(values_text, "values.yaml")
    _check(_load(chart_text, "Chart.yaml"), _load(new_chart, "Chart.yaml"),
           {"version": version, "appVersion": version}, "Chart.yaml")
    _check(before_values, _load(new_values, "values.yaml"),
           {"image": {**before_values["image"], "digest": digest}}, "values.yaml")
    chart_yaml.write_text(new_chart)
    values_yaml.write_text(new_values)


def _load(text: str, name: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise Refused(f"{name}: not a YAML mapping")
    return doc


def _check(before: dict[str, Any], after: dict[str, Any], changes: dict[str, Any], name: str) -> None:
    expected = {**before, **changes}
    if after != expected:
        keys = sorted(k for k in expected.keys() | after.keys() if expected.get(k) != after.get(k))
        raise Refused(f"{name}: rewriting changed {keys} otherwise than asked")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("tag", help="the git tag being released, v<semver>")
    parser.add_argument("operator_digest", nargs="?",
                        help="sha256:... of the pushed operator image (its manifest list); without it, only "
                             "the tag and the distributions' versions are checked (before anything is built)")
    parser.add_argument("--chart", type=Path, default=ROOT / "charts" / "modelrollout")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository holding the pyprojects")
    args = parser.parse_args(argv)
    try:
        version = version_of(args.tag)
        check_distributions(args.root, version)
        if args.operator_digest is None:
            print(f"{args.tag}: the distributions and the default serving image carry {version}")
            return 0
        stamp_chart(args.chart, version, args.operator_digest)
    except Refused as refused:
        print(f"chart_release: {refused}", file=sys.stderr)
        return 1
    print(f"chart {args.chart.name} {version}, image.digest {args.operator_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
