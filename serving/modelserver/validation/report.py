"""The outcome of a validation run: its checks, and how it is written out (JSON file, Markdown for a
pull-request comment, and a compact JSON termination message the operator reads back from the Job's pod).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

# Kubernetes keeps at most 4096 bytes of a container's termination message.
TERMINATION_MESSAGE_BYTES = 4096
PASS, FAIL = "Pass", "Fail"


@dataclass(frozen=True)
class Check:
    """One check: `name` is the spec field it enforces (minAccuracy, maxRegression.f1, missingValues, ...),
    `subject` what it looked at (a column, a class, "macro"), values are None where they do not apply."""

    name: str
    subject: str
    verdict: str
    message: str
    candidate: float | None = None
    stable: float | None = None
    threshold: float | None = None

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    rows: int = 0
    error: str | None = None  # the dataset or a model could not be read: the gate fails with this

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and not any(c.failed for c in self.checks)

    @property
    def message(self) -> str:
        """One line for a status message: the error, or the first failed check, or a summary."""
        if self.error is not None:
            return self.error
        failed = [c for c in self.checks if c.failed]
        if failed:
            more = f" (and {len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
            return f"{failed[0].name} failed: {failed[0].message}{more}"
        return f"all {len(self.checks)} checks passed on {self.rows} holdout rows"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "message": self.message, "rows": self.rows, "error": self.error,
                "checks": [_check_dict(c) for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def termination_message(self) -> str:
        """Compact JSON within Kubernetes' 4096 bytes: failed checks first; checks that do not fit are
        counted in `omitted` (the verdict and message always fit)."""
        ordered = sorted(self.checks, key=lambda c: not c.failed)
        kept: list[dict[str, Any]] = []
        body: dict[str, Any] = {"passed": self.passed, "message": self.message[:1000], "rows": self.rows,
                                "checks": kept, "omitted": 0}
        for i, check in enumerate(ordered):
            kept.append(_check_dict(check))
            if len(_compact(body).encode()) > TERMINATION_MESSAGE_BYTES - 40:
                kept.pop()
                body["omitted"] = len(ordered) - i
                break
        return _compact(body)

    def to_markdown(self, title: str = "Model validation") -> str:
        mark = "passed" if self.passed else "FAILED"
        lines = [f"### {title}: {mark}", "", self.message, ""]
        if self.checks:
            lines += ["| check | subject | candidate | stable | threshold | verdict |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {c.name} | {c.subject} | {_num(c.candidate)} | {_num(c.stable)} | {_num(c.threshold)} "
                      f"| {'✅' if not c.failed else '❌'} {c.verdict} |" for c in self.checks]
        return "\n".join(lines) + "\n"


def _check_dict(c: Check) -> dict[str, Any]:
    return {k: v for k, v in asdict(c).items() if v is not None}


def _compact(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
