#!/usr/bin/env python3
"""Write the krew plugin manifest (krew.googlecontainertools.github.com/v1alpha2 Plugin) for a release, from the release
asset it points at: the launcher archive's sha256 is read from the file, never typed in.

    hack/release/krew_manifest.py bundle v1.2.3 OUT_DIR      # the archive: OUT_DIR/kubectl-modelrollout-v1.2.3.tar.gz
    hack/release/krew_manifest.py manifest v1.2.3 ARCHIVE --repo OWNER/NAME > modelrollout.yaml

The archive holds hack/release/kubectl-modelrollout with the release's version filled in (a launcher that
installs modelrollout-operator==VERSION into its own virtualenv on first use; why not a native bundle: see
that file and docs/release.md). It is the same for every platform, so each platform entry of
the manifest points at the one asset. The archive is reproducible (fixed mtimes, owners and order), so
building it twice from one commit gives one sha256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_release import Refused, version_of  # a sibling script, not a package

LAUNCHER = Path(__file__).resolve().parent / "kubectl-modelrollout"

# What krew can install it on: where a python3 >= 3.11 and a POSIX shell exist (no Windows launcher).
PLATFORMS = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")]
BIN = "kubectl-modelrollout"


def archive_name(tag: str) -> str:
    return f"kubectl-modelrollout-{tag}.tar.gz"


def build_archive(tag: str, out_dir: Path) -> Path:
    """The launcher with VERSION filled in, as a reproducible .tar.gz in out_dir."""
    version = version_of(tag)
    launcher = LAUNCHER.read_text()
    if launcher.count("@VERSION@") < 1:
        raise Refused(f"{LAUNCHER}: no @VERSION@ to fill in")
    members = [(BIN, launcher.replace("@VERSION@", version).encode(), 0o755)]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / archive_name(tag)
    # mtime=0 in the gzip header too, so the bytes depend on the content only.
    with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw.getvalue())
    return path


def manifest(tag: str, archive: Path, repo: str) -> dict[str, Any]:
    """The krew Plugin for `archive`, downloaded from the GitHub release of `tag` in `repo`."""
    version_of(tag)
    if archive.name != archive_name(tag):
        raise Refused(f"{archive.name}: the asset of {tag} is named {archive_name(tag)}")
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    uri = f"https://github.com/{repo}/releases/download/{tag}/{archive.name}"
    platforms = [{
        "selector": {"matchLabels": {"os": os_name, "arch": arch}},
        "uri": uri,
        "sha256": sha256,
        "files": [{"from": BIN, "to": "."}],
        "bin": BIN,
    } for os_name, arch in PLATFORMS]
    return {
        "apiVersion": "krew.googlecontainertools.github.com/v1alpha2",
        "kind": "Plugin",
        "metadata": {"name": "modelrollout"},
        "spec": {
            "version": tag,
            "homepage": f"https://github.com/{repo}",
            "shortDescription": "Follow and steer ModelRollouts (canary / blue-green of ML models)",
            "description": ("Lists ModelRollouts, shows their versions, pods and last analysis, waits for a\n"
                            "rollout's verdict, and promotes, aborts, retries or undoes one.\n"),
            "caveats": ("Needs python3 >= 3.11 on PATH (or MODELROLLOUT_PYTHON). On first use the plugin\n"
                        f"installs modelrollout-operator=={version_of(tag)} from PyPI into its own\n"
                        "virtualenv under ~/.local/share/modelrollout-plugin (MODELROLLOUT_PLUGIN_HOME).\n"),
            "platforms": platforms,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    bundle = sub.add_parser("bundle", help="build the launcher archive")
    bundle.add_argument("tag")
    bundle.add_argument("out_dir", type=Path)
    man = sub.add_parser("manifest", help="print the krew manifest for an archive")
    man.add_argument("tag")
    man.add_argument("archive", type=Path)
    man.add_argument("--repo", required=True, help="OWNER/NAME of the GitHub repository holding the release")
    args = parser.parse_args(argv)
    try:
        if args.command == "bundle":
            print(build_archive(args.tag, args.out_dir))
        else:
            print(yaml.safe_dump(manifest(args.tag, args.archive, args.repo), sort_keys=False), end="")
    except Refused as refused:
        print(f"krew_manifest: {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
