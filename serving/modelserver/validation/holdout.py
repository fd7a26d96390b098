"""The holdout dataset: a CSV file with a header row and a label column, or an .npz file with arrays
X (rows x features) and y (labels). A URL is downloaded and must match the sha256 it was given.

Cells are kept as they come (missing and non-numeric ones marked, not dropped or imputed), so that the
data checks can name the column at fault instead of a parse error hiding it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelserver.validation.config import ValidationConfig

MISSING = frozenset({"", "na", "nan", "null", "none", "n/a"})
_FETCH_TIMEOUT_S = 60.0
MAX_BYTES = 256 * 1024 * 1024  # a holdout larger than this belongs in a batch job, not a rollout gate


class DataError(Exception):
    """The dataset cannot be read at all (missing file, wrong digest, no label column): the gate fails."""


@dataclass(frozen=True)
class Holdout:
    """columns: feature names in model order; x: float rows, NaN where a cell is missing or not a number;
    non_numeric[i]: how many cells of column i were present but not numbers; y: labels as strings."""

    columns: tuple[str, ...]
    x: np.ndarray
    non_numeric: tuple[int, ...]
    y: np.ndarray
    missing_labels: int
    label_column: str


def read_bytes(source: str, sha256: str | None) -> bytes:
    """The file's bytes; http(s) sources need a sha256 (hex, optionally 'sha256:'-prefixed) and must match it."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        if not sha256:
            raise DataError(f"holdout {source}: a URL needs its sha256 digest")
        try:
            with urllib.request.urlopen(source, timeout=_FETCH_TIMEOUT_S) as response:
                data = response.read(MAX_BYTES + 1)
        except OSError as exc:
            raise DataError(f"holdout {source}: cannot download: {exc}") from exc
    else:
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"holdout {path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise DataError(f"holdout {source}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if sha256:
        expected = sha256.lower().removeprefix("sha256:")
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise DataError(f"holdout {source}: sha256 mismatch: expected {expected}, file has {actual}")
    return data


def load_holdout(source: str, config: ValidationConfig, sha256: str | None = None) -> Holdout:
    data = read_bytes(source, sha256)
    path = urllib.parse.urlparse(source).path or source
    if path.lower().endswith(".npz"):
        return _from_npz(data, config, source)
    return _from_csv(data, config, source)


def _from_csv(data: bytes, config: ValidationConfig, source: str) -> Holdout:
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"holdout {source}: not a UTF-8 CSV file: {exc}") from exc
    if not rows:
        raise DataError(f"holdout {source}: empty file")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if config.label_column not in header:
        raise DataError(f"holdout {source}: no label column {config.label_column!r} (columns: {', '.join(header)})")
    short = next((i for i, r in enumerate(body) if len(r) != len(header)), None)
    if short is not None:
        raise DataError(f"holdout {source}: row {short + 2} has {len(body[short])} cells, the header {len(header)}")
    if not body:
        raise DataError(f"holdout {source}: no rows")
    label_at = header.index(config.label_column)
    columns = tuple(h for i, h in enumerate(header) if i != label_at)
    cells = [[r[i].strip() for r in body] for i in range(len(header)) if i != label_at]
    parsed = [_parse_column(c) for c in cells]
    x = np.column_stack([p[0] for p in parsed]) if parsed else np.empty((len(body), 0))
    labels = [r[label_at].strip() for r in body]
    missing_labels = sum(1 for v in labels if v.lower() in MISSING)
    return Holdout(columns, x, tuple(p[1] for p in parsed), np.asarray(labels, dtype=object), missing_labels,
                   config.label_column)


def _parse_column(cells: list[str]) -> tuple[np.ndarray, int]:
    values = np.full(len(cells), np.nan)
    non_numeric = 0
    for i, cell in enumerate(cells):
        if cell.lower() in MISSING:
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            non_numeric += 1
    return values, non_numeric


def _from_npz(data: bytes, config: ValidationConfig, source: str) -> Holdout:
    try:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)  # pickled object arrays run code: refused
        x, y = arrays["X"], arrays["y"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"holdout {source}: not an .npz file with arrays X and y: {exc}") from exc
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"holdout {source}: X must be rows x features and y one label per row, "
                        f"got X {x.shape} and y {y.shape}")
    if not len(x):
        raise DataError(f"holdout {source}: no rows")
    names = [f.name for f in config.features]
    columns = tuple(names) if len(names) == x.shape[1] else tuple(f"x{i}" for i in range(x.shape[1]))
    numeric = np.issubdtype(x.dtype, np.number) or x.dtype == bool
    floats = x.astype(np.float64) if numeric else np.full(x.shape, np.nan)
    non_numeric = (0,) * x.shape[1] if numeric else (len(x),) * x.shape[1]
    labels = np.asarray([str(v) for v in y], dtype=object)
    missing = sum(1 for v in labels if v.lower() in MISSING)
    return Holdout(columns, floats, non_numeric, labels, missing, "y")
