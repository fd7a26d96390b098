"""The validation gate's checks (modelserver/validation): scores pinned to scikit-learn's own functions,
each data check naming its column, model checks against minimums and the stable model, and the CLI's
report and exit codes (0 pass, 1 fail, 2 usage error)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from modelserver.validation.cli import main, modelrollout_main
from modelserver.validation.config import KNOWN_FIELDS, SCORES, ValidationConfig
from modelserver.validation.report import TERMINATION_MESSAGE_BYTES, Check, Report
from modelserver.validation.run import ModelRef, validate
from modelserver.validation.scores import prediction_shift, scores
from tests.e2e.test_crd_validation import INVALID_CHECKS
from tests.unit.test_defaults import CRD_FILES, defaults_in, spec_schema

from .conftest import ExampleModels

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seed", range(8))
def test_scores_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ("a", "b", "c", "d")
    y_true = [str(v) for v in rng.choice(classes, 200, p=[0.5, 0.3, 0.15, 0.05])]
    y_pred = [str(v) for v in rng.choice(classes[:3], 200)]  # "d" never predicted: zero_division matters
    got = scores(y_true, y_pred, classes)
    assert got.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert got.macro[name] == pytest.approx(fn(y_true, y_pred, labels=list(classes), average="macro",
                                                   zero_division=0))
        per_class = fn(y_true, y_pred, labels=list(classes), average=None, zero_division=0)
        assert [got.per_class[c][name] for c in classes] == pytest.approx(list(per_class))


def test_prediction_shift_is_total_variation() -> None:
    assert prediction_shift(["a"] * 10, ["a"] * 10) == 0.0
    assert prediction_shift(["a"] * 10, ["b"] * 10) == 1.0
    assert prediction_shift(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.25)


@pytest.mark.parametrize(("spec", "field"), [
    ({"minAccuracy": 1.5}, "config.minAccuracy"),
    ({"minF1": "high"}, "config.minF1"),
    ({"maxRegression": {"auc": 1}}, "config.maxRegression.auc"),
    ({"maxRegression": {"f1": -1}}, "config.maxRegression.f1"),
    ({"features": [{"name": "x", "dtype": "text"}]}, "config.features[0].dtype"),
    ({"features": [{"name": "x", "min": 2, "max": 1}]}, "config.features[0]"),
    ({"features": [{"name": "x"}, {"name": "x"}]}, "config.features"),
    ({"maxPredictionShift": 2}, "config.maxPredictionShift"),
    ({"perClass": "yes"}, "config.perClass"),
    ({"minAcc": 0.9}, "config.minAcc"),
])
def test_bad_config_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as raised:
        ValidationConfig.from_dict(spec, where="config")
    assert str(raised.value).startswith(f"{field}:")


@pytest.mark.parametrize(("case", "body", "field"), INVALID_CHECKS, ids=[c[0] for c in INVALID_CHECKS])
def test_the_jobs_parser_refuses_what_the_crd_refuses(case: str, body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as raised:
        ValidationConfig.from_dict(body["spec"]["validation"]["checks"])
    assert str(raised.value).startswith(f"{field}:"), f"{case}: {raised.value}"


def test_the_crd_declares_exactly_the_fields_the_parser_knows() -> None:
    for path in CRD_FILES:
        checks = spec_schema(path)["properties"]["validation"]["properties"]["checks"]
        assert not list(defaults_in(checks)), "defaults of checks live in ValidationConfig only (docs/validation.md)"
        assert set(checks["properties"]) == KNOWN_FIELDS
        assert set(checks["properties"]["maxRegression"]["properties"]) == set(SCORES)


def _write_csv(path: Path, x: list[list[Any]], y: list[Any], names: list[str] | None = None) -> Path:
    names = names or [f"f{i}" for i in range(len(x[0]))]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "label"])
        writer.writerows([*row, label] for row, label in zip(x, y, strict=True))
    return path


@pytest.fixture
def holdout(models: ExampleModels, tmp_path: Path) -> Path:
    x, y = models.holdout()
    return _write_csv(tmp_path / "holdout.csv", x, y)


def _ref(models: ExampleModels, file: str) -> ModelRef:
    entry = models.entry(file)
    return ModelRef(uri=str(models.directory / file), digest=entry["digest"], allow_pickle=entry["format"] != "skops")


def _failed(report: Report) -> list[Check]:
    return [c for c in report.checks if c.failed]


def test_good_candidate_passes_every_check(models: ExampleModels, holdout: Path) -> None:
    config = ValidationConfig.from_dict({"minAccuracy": 0.85, "minF1": 0.85, "maxRegression": {"accuracy": 1},
                                         "maxPredictionShift": 0.1, "perClass": True})
    report = validate(_ref(models, "lr.skops"), _ref(models, "rf.skops"), str(holdout), config)
    assert report.passed, report.message
    accuracy = next(c for c in report.checks if c.name == "minAccuracy")
    assert accuracy.candidate == pytest.approx(models.entry("rf.skops")["accuracy"], abs=0.005)
    assert accuracy.stable == pytest.approx(models.entry("lr.skops")["accuracy"], abs=0.005)
    assert {c.subject for c in report.checks if c.name == "minF1"} == {"macro", "class 0", "class 1"}


def test_bad_candidate_fails_minimum_and_regression(models: ExampleModels, holdout: Path) -> None:
    config = ValidationConfig.from_dict({"minAccuracy": 0.8, "maxRegression": {"f1": 5}})
    report = validate(_ref(models, "lr.skops"), _ref(models, "lr-bad.joblib"), str(holdout), config)
    assert not report.passed
    assert {c.name for c in _failed(report)} == {"minAccuracy", "maxRegression.f1"}
    assert report.message.startswith("minAccuracy failed: candidate accuracy (overall) 0.")


def _mutated_holdout(models: ExampleModels, tmp_path: Path, change: Any) -> Path:
    x, y = models.holdout()
    rows = [[str(v) for v in row] for row in x]
    labels = [str(v) for v in y]
    change(rows, labels)
    return _write_csv(tmp_path / "bad.csv", rows, labels)


@pytest.mark.parametrize(("change", "config", "name", "subject", "words"), [
    (lambda x, y: x[7].__setitem__(3, ""), {}, "missingValues", "f3", "1 of 500 values are missing"),
    (lambda x, y: x[7].__setitem__(5, "seven"), {}, "dtype", "f5", "1 values are not numbers"),
    (lambda x, y: y.__setitem__(2, "cat"), {}, "labels", "label", "values cat are not among"),
    (lambda x, y: y.__setitem__(2, ""), {}, "missingValues", "label", "1 labels are missing"),
    (lambda x, y: x.extend([x[0]] * 30) or y.extend([y[0]] * 30), {}, "maxDuplicateFraction", "rows",
     "30 of 530 rows"),
    (lambda x, y: None, {"features": [{"name": f"f{i}", "min": -100, "max": 100} for i in range(19)]
                         + [{"name": "f19", "min": 0}]}, "ranges", "f19", "outside [0, inf]"),
    (lambda x, y: None, {"features": [{"name": f"f{i}"} for i in range(19)] + [{"name": "f19", "dtype": "int"}]},
     "dtype", "f19", "not integers"),
    (lambda x, y: None, {"features": [{"name": "f0"}, {"name": "income"}]}, "features", "income",
     "income is not in the holdout"),
    (lambda x, y: None, {"features": [{"name": "f0"}, {"name": "f1"}]}, "featureCount", "features",
     "2 feature columns, the model takes 20"),
])
def test_data_checks_name_the_column(models: ExampleModels, tmp_path: Path, change: Any, config: dict[str, Any],
                                     name: str, subject: str, words: str) -> None:
    data = _mutated_holdout(models, tmp_path, change)
    report = validate(_ref(models, "lr.skops"), _ref(models, "rf.skops"), str(data),
                      ValidationConfig.from_dict({"minAccuracy": 0.5, **config}))
    failed = _failed(report)
    assert [(c.name, c.subject) for c in failed] == [(name, subject)], report.message
    assert words in failed[0].message
    assert not any(c.name == "minAccuracy" for c in report.checks)  # no model judged on bad data


def test_npz_holdout_and_digest(models: ExampleModels, tmp_path: Path) -> None:
    x, y = models.holdout()
    path = tmp_path / "holdout.npz"
    np.savez(path, X=np.asarray(x), y=np.asarray(y))
    config = ValidationConfig.from_dict({"minAccuracy": 0.85})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert validate(_ref(models, "lr.skops"), _ref(models, "rf.skops"), str(path), config, digest).passed
    wrong = validate(_ref(models, "lr.skops"), _ref(models, "rf.skops"), str(path), config, "0" * 64)
    assert not wrong.passed and "sha256 mismatch" in (wrong.error or "")


@pytest.mark.parametrize(("data", "words"), [
    ("/nonexistent/holdout.csv", "cannot read"),
    ("http://127.0.0.1:9/holdout.csv", "a URL needs its sha256"),
])
def test_unreadable_data_is_a_failure_with_a_message(models: ExampleModels, data: str, words: str) -> None:
    report = validate(_ref(models, "lr.skops"), _ref(models, "rf.skops"), data, ValidationConfig())
    assert not report.passed and words in report.message


def test_termination_message_fits_and_puts_failures_first() -> None:
    checks = tuple(Check("ranges", f"column_{i}", "Pass", "x" * 100) for i in range(100))
    report = Report(checks=(*checks, Check("minF1", "macro", "Fail", "too low", 0.5, 0.9, 0.8)), rows=10)
    message = report.termination_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_BYTES
    body = json.loads(message)
    assert body["checks"][0]["name"] == "minF1" and body["omitted"] > 0 and body["passed"] is False


def test_cli_exit_codes_report_and_json(models: ExampleModels, holdout: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "validation.yaml"
    config.write_text("minAccuracy: 0.85\nmaxRegression: {accuracy: 2}\n")
    out = tmp_path / "report.json"
    base = ["--baseline", str(models.directory / "lr.skops"), "--data", str(holdout), "--config", str(config),
            "--json", str(out)]
    assert modelrollout_main(["validate", *base, "--candidate", str(models.directory / "rf.skops")]) == 0
    assert "| minAccuracy | overall |" in capsys.readouterr().out
    assert json.loads(out.read_text())["passed"] is True
    bad = models.entry("lr-bad.joblib")["digest"]
    assert main([*base, "--candidate", str(models.directory / "lr-bad.joblib"), "--candidate-digest", bad,
                 "--allow-pickle"]) == 1
    assert "### Model validation: FAILED" in capsys.readouterr().out
    assert json.loads(out.read_text())["passed"] is False
    config.write_text("minAccuracy: 2\n")
    assert main([*base, "--candidate", str(models.directory / "rf.skops")]) == 2
    assert "config.minAccuracy" in capsys.readouterr().err
    config.write_text("minAccuracy: 0.5\n")
    assert main([*base[:2], "--data", str(tmp_path / "absent.csv"), *base[4:], "--candidate", "x"]) == 2
    assert "absent.csv: no such file" in capsys.readouterr().err
    assert modelrollout_main(["promote"]) == 2
    with pytest.raises(SystemExit) as exited:
        main(["--candidate", "x"])
    assert exited.value.code == 2
