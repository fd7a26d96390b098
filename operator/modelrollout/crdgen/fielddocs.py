"""Field meanings read from the reference tables of docs/modelrollout.md, as plain text for the CRD.

A table row documents the fields named in backticks in its first cell (a row may name several fields that
share a meaning, e.g. the model records of status). The description is the row's Meaning cell, followed by
its Default cell when that says more than "none" or "required":

>>> rows = field_descriptions('''
... | Field | Type | Default | Meaning |
... |---|---|---|---|
... | `spec.analysis.interval` | duration | `15s` | Time between analysis ticks (see *Analysis*). |
... | `spec.model.uri` | string | required | Where the pods load the model from; see [metrics.md](metrics.md). |
... ''')
>>> rows["spec.analysis.interval"]
'Time between analysis ticks (see Analysis). Default: 15s.'
>>> rows["spec.model.uri"]
'Where the pods load the model from; see metrics.md.'
"""

from __future__ import annotations

import re

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_FIELD = re.compile(r"`((?:spec|status)(?:[.\w\[\]]*))`")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_STRONG = re.compile(r"\*\*(.+?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
# Default cells that add nothing to the schema (which already says `required`) or to the meaning.
_SILENT_DEFAULTS = {"", "none", "required"}


def plain_text(markdown: str) -> str:
    """Inline Markdown as kubectl explain prints it: no backticks, emphasis or link targets."""
    text = _LINK.sub(r"\1", markdown.replace("\\|", "|"))
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    return " ".join(text.replace("`", "").split())


def _cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(line.strip().strip("|"))]


def _tables(markdown: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table as (header cells, body rows)."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    lines = markdown.splitlines()
    i = 0
    while i + 1 < len(lines):
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[i + 1]):
            header, rows = _cells(lines[i]), []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((header, rows))
        else:
            i += 1
    return tables


def _description(row: dict[str, str]) -> str:
    meaning = plain_text(row["Meaning"])
    default = plain_text(row.get("Default", ""))
    if default.lower() in _SILENT_DEFAULTS or default.lower().startswith(("required", "one of")):
        return meaning
    return f"{meaning} Default: {default.rstrip('.')}."


def field_descriptions(markdown: str) -> dict[str, str]:
    """{field path: description} from every table with a Field and a Meaning column.

    Raises ValueError when two rows describe the same field: the docs must say one thing per field."""
    found: dict[str, str] = {}
    for header, rows in _tables(markdown):
        if "Field" not in header or "Meaning" not in header:
            continue
        for cells in rows:
            row = dict(zip(header, cells, strict=False))
            description = _description(row)
            for path in _FIELD.findall(row["Field"]):
                if path in found:
                    raise ValueError(f"{path} is described by two rows of the docs")
                found[path] = description
    return found


def summary(markdown: str) -> str:
    """The first sentence after the document's title, as plain text (the kind's one-line description)."""
    paragraph: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("# "):
            continue
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line)
    return plain_text(" ".join(paragraph)).split(". ", 1)[0].rstrip(".") + "."
