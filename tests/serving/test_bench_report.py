"""The benchmark's report: verdicts follow the numbers, the generated section replaces only itself,
and the load generator falls back to Python when wrk cannot be had. No servers are started here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench/serving"


def _load(name: str) -> ModuleType:
    """A bench script as a module under a name that cannot clash with other tests' imports."""
    spec = importlib.util.spec_from_file_location(f"bench_serving_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


loadgen = _load("loadgen")
report = _load("report")
Scenario = report.Scenario

pytestmark = pytest.mark.unit

LR16 = Scenario("lr", 1, 16)
RF16 = Scenario("rf", 1, 16)


def _run(rps: float, p99: float, errors: int = 0) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "cpu_ms_per_request": 0.2, "errors": errors}


def _targets(scenario: Scenario) -> list[tuple[str, str, str]]:
    ours = [("modelserver (inline)", "x", scenario.model)]
    theirs = [("MLServer", "m", scenario.model)]
    if scenario.model == "rf":
        theirs.append(("MLServer + adaptive batching", "m", "rf-batched"))
    return ours + theirs


def _section(lr_ours: list[dict[str, float]], lr_theirs: list[dict[str, float]], rf_ours: float,
             rf_batched: float) -> str:
    results: report.Results = {
        (0, "modelserver (inline)"): lr_ours, (0, "MLServer"): lr_theirs,
        (1, "modelserver (inline)"): [_run(rf_ours, 10)], (1, "MLServer"): [_run(200, 100)],
        (1, "MLServer + adaptive batching"): [_run(rf_batched, 90)]}
    return report.render_section("Measured now.", [LR16, RF16], _targets, results, {"lr, 1 row(s)": 0.1})


def test_targets_are_judged_on_medians_and_the_lr_target_needs_a_lower_p99_too() -> None:
    # Medians: ours 3,000 req/s (one slow outlier ignored), theirs 900 -> 3.33x; p99 10 vs 40 ms.
    met = _section([_run(3000, 10), _run(3100, 9), _run(100, 500)], [_run(900, 40)] * 3, 1600, 1000)
    assert "LogisticRegression, one row, 16 clients: **met**: 3.33x" in met
    assert "RandomForest(50), one row, 16 clients: **met**: 1.60x" in met
    slower_tail = _section([_run(3000, 50)], [_run(900, 40)], 1400, 1000)
    assert "LogisticRegression, one row, 16 clients: **NOT MET**" in slower_tail
    assert "RandomForest(50), one row, 16 clients: **NOT MET**: 1.40x" in slower_tail


def test_the_table_has_a_row_per_server_with_ratios_and_summed_errors() -> None:
    section = _section([_run(3000, 10, errors=2), _run(3000, 10, errors=1)], [_run(1000, 40)] * 2, 1600, 800)
    rows = [line for line in section.splitlines() if line.startswith("| lr ") or line.startswith("| rf ")]
    assert len(rows) == 5
    assert rows[0].startswith("| lr | 1 | 16 | modelserver (inline) | 3,000 |")
    assert rows[0].endswith("| 3.00x | - | 3 |")
    assert rows[2].endswith("| 8.00x | 2.00x | 0 |")  # forest: 1,600 vs 200 and vs 800 req/s


def test_only_the_generated_section_is_replaced(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Title\nhand-written intro\n\n{report.BEGIN}\nold table\n{report.END}\n\n## Reading\nkept\n")
    report.write_into(doc, f"{report.BEGIN}\nnew table\n{report.END}\n")
    assert doc.read_text() == (f"# Title\nhand-written intro\n\n{report.BEGIN}\nnew table\n{report.END}\n"
                               "## Reading\nkept\n")
    plain = tmp_path / "plain.md"
    plain.write_text("# No section yet\n")
    report.write_into(plain, f"{report.BEGIN}\nt\n{report.END}\n")
    assert plain.read_text() == f"# No section yet\n\n{report.BEGIN}\nt\n{report.END}\n"


def test_wrk_on_the_path_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadgen.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert loadgen.ensure_wrk() == "/usr/bin/wrk"


def test_without_wrk_and_without_root_the_python_generator_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(loadgen.shutil, "which", lambda name: None)
    monkeypatch.setattr(loadgen.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(loadgen.subprocess, "run", lambda *a, **k: calls.append(a))
    assert loadgen.ensure_wrk() is None
    assert calls == []  # no apt-get attempted without root


def test_the_load_generators_refuse_anything_but_loopback(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="loopback only"):
        loadgen.run_wrk("/usr/bin/wrk", "http://10.0.0.1:8080/v2/models/lr/infer", tmp_path / "b.json", 1, 1.0)


def test_the_mirroring_section_judges_the_first_mode_against_off_and_shows_the_others() -> None:
    def run(p99: float, sent: float = 0, dropped: float = 0) -> dict[str, float]:
        return {**_run(1500, p99), "own_cpu_ms_per_request": 0.15, "sent": sent, "failed": 0, "dropped": dropped}

    paced, saturated = Scenario("lr", 1, 16, think_ms=10.0), Scenario("lr", 1, 16)
    results = {(0, "off"): [run(4.0), run(5.0), run(30.0)], (0, "sink"): [run(4.2, 900), run(4.4, 900), run(3.0, 900)],
               (0, "candidate"): [run(9.0, 900)],
               (1, "off"): [run(8.0)], (1, "sink"): [run(12.0, 5000, 7)], (1, "candidate"): [run(6.0, 4000)]}
    labels = {"off": "off", "sink": "to a responder", "candidate": "to a candidate"}
    section = report.render_mirror_section("Measured now.", [paced, saturated], results, labels)
    verdicts = [line for line in section.splitlines() if line.startswith("- lr")]
    # Paced: medians 5.0 off vs 4.2 on; saturated 8.0 vs 12.0 (+50%).
    assert "4.20 ms with mirroring to a responder vs 5.00 ms off: **-16.0% (ratio 0.84), met**" in verdicts[0]
    assert "shown, not judged" in verdicts[1]
    assert "12.00 ms with mirroring to a responder vs 8.00 ms off: **+50.0% (ratio 1.50), NOT MET**" in verdicts[2]
    assert "| 4.0-30.0 |" in section and "| 2,700 / 0 / 0 |" in section and "| 5,000 / 0 / 7 |" in section
    doc = report.replace_section(f"intro\n{report.BEGIN}\nmain\n{report.END}\n", section,
                                 report.MIRROR_BEGIN, report.MIRROR_END)
    assert doc.startswith(f"intro\n{report.BEGIN}\nmain\n{report.END}\n") and doc.endswith(report.MIRROR_END + "\n")
    again = report.replace_section(doc, section.replace("Measured now.", "Later."), report.MIRROR_BEGIN,
                                   report.MIRROR_END)
    assert "Later." in again and "Measured now." not in again and "main" in again
