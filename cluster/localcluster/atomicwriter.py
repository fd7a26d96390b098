"""A ConfigMap or Secret volume laid out and updated as the kubelet's AtomicWriter does it.

    <volume>/..2026_12_07_15_40_01.123456789/<files>   the payload, one directory per version
    <volume>/..data -> ..2026_12_07_15_40_01.123456789   swapped in one rename(2) on every update
    <volume>/<name> -> ..data/<name>                     each top-level name of the payload

A reader opening `<volume>/<name>` gets the old file or the new one, never a mix or a half-written one, and
a path that resolved to one inode resolves to another after an update: programs that watch the file (the
model server's mirror configuration) see the change as they would on a real node.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> write_payload(root, {"mirror.yaml": b"percent: 0\\n"}), write_payload(root, {"mirror.yaml": b"percent: 0\\n"})
(True, False)
>>> first = (root / "mirror.yaml").resolve()
>>> write_payload(root, {"mirror.yaml": b"percent: 5\\n"}), (root / "mirror.yaml").read_text()
(True, 'percent: 5\\n')
>>> (root / "mirror.yaml").resolve() != first, first.exists()
(True, False)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from pathlib import Path

DATA = "..data"


def read_payload(folder: Path) -> dict[str, bytes] | None:
    """The files of the version in force, by path relative to the payload; None before the first write."""
    current = folder / DATA
    if not current.is_symlink():
        return None
    base = current.resolve()
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def write_payload(folder: Path, files: dict[str, bytes], mode: int = 0o644) -> bool:
    """Make `files` the volume's content; False (nothing written) when it already is."""
    folder.mkdir(parents=True, exist_ok=True)
    if read_payload(folder) == files:
        return False
    old = (folder / DATA).resolve() if (folder / DATA).is_symlink() else None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y_%m_%d_%H_%M_%S.%f")
    version = folder / f"..{stamp}"
    while version.exists():  # two writes within a microsecond
        version = version.with_name(version.name + "_")
    for name, content in files.items():
        path = version / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    staged = folder / f"{DATA}_tmp"
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()
    staged.symlink_to(version.name)
    os.replace(staged, folder / DATA)
    _link_top_level(folder, {name.split("/", 1)[0] for name in files})
    if old is not None and old != version.resolve():
        shutil.rmtree(old, ignore_errors=True)
    return True


def _link_top_level(folder: Path, names: set[str]) -> None:
    """`<name> -> ..data/<name>` for each top-level name; links of names gone from the payload removed."""
    for entry in folder.iterdir():
        if entry.name.startswith("..") or not entry.is_symlink() or entry.name in names:
            continue
        entry.unlink()
    for name in names:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{name}")
