"""Train the small example models deterministically and write them with a manifest.

    python examples/models/train.py OUTDIR

writes, for the classification task make_classification(2000, 20, random_state=42):
  lr        LogisticRegression                         (joblib and skops)
  rf        RandomForestClassifier(n_estimators=50)    (joblib and skops)
  lr-bad    LogisticRegression fitted on shuffled labels: about chance accuracy, the rollout that
            feedback should catch                      (joblib)
  lr-biased LogisticRegression with its intercept moved by +2 (it favours class 1, as one trained on another
            class balance would): about 10 points less accurate than lr, the shadow candidate the paired
            test should catch                          (joblib)
and for make_regression(2000, 20, noise=10, random_state=42):
  ridge     Ridge regressor                            (joblib)
plus, beside each model, `<name>.drift.json`: the training inputs' reference for drift watching (per-feature
quantile bins and counts, modelserver.driftref; the server finds it beside the model file), and
`manifest.json` (name, version, file, format, digest, n_features, accuracy or mae on the held-out
quarter, drift_reference: the reference's file and digest) and `holdout-classification.json` (the held-out
rows and labels, for sending traffic and feedback), the same rows as `holdout-classification.csv` (for
spec.validation). Fixed seeds: the same files every run with the same library versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import skops.io
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split

from modelserver import driftref

SEED = 42


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _write(model: Any, outdir: Path, name: str, fmt: str) -> Path:
    path = outdir / f"{name}.{fmt}"
    if fmt == "skops":
        skops.io.dump(model, path)
    else:
        joblib.dump(model, path)
    return path


def _entry(path: Path, name: str, fmt: str, n_features: int, score: dict[str, float]) -> dict[str, Any]:
    reference = path.with_name(f"{name}{DRIFT_SUFFIX}")
    return {"name": name, "version": "1", "file": path.name, "format": fmt, "digest": _digest(path),
            "n_features": n_features, **score,
            "drift_reference": {"file": reference.name, "digest": _digest(reference)}}


DRIFT_SUFFIX = ".drift.json"  # beside the model: <name>.drift.json (modelserver.drift finds it there)


def _write_reference(x_train: np.ndarray, outdir: Path, name: str) -> None:
    """The training inputs' bins, written before the model's manifest entry that records its digest."""
    names = [f"f{i}" for i in range(x_train.shape[1])]
    (outdir / f"{name}{DRIFT_SUFFIX}").write_text(driftref.build(x_train, names).to_json() + "\n")


BIAS = 2.0  # lr-biased: added to the fitted intercept, so it says class 1 more often than it should


def _biased(model: LogisticRegression) -> LogisticRegression:
    """A plain LogisticRegression (so any server loads it) whose decision threshold is off."""
    model.intercept_ = model.intercept_ + BIAS
    return model


def _classification_models(outdir: Path) -> list[dict[str, Any]]:
    x, y = make_classification(n_samples=2000, n_features=20, random_state=SEED)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED)
    shuffled = np.random.default_rng(SEED).permutation(y_train)
    makers: dict[str, tuple[Callable[[], Any], Any, tuple[str, ...]]] = {
        "lr": (lambda: LogisticRegression(max_iter=1000), y_train, ("joblib", "skops")),
        "rf": (lambda: RandomForestClassifier(n_estimators=50, random_state=SEED), y_train, ("joblib", "skops")),
        "lr-bad": (lambda: LogisticRegression(max_iter=1000), shuffled, ("joblib",)),
        "lr-biased": (lambda: LogisticRegression(max_iter=1000), y_train, ("joblib",)),
    }
    entries = []
    for name, (make, labels, formats) in makers.items():
        model = make().fit(x_train, labels)
        if name == "lr-biased":
            model = _biased(model)
        accuracy = float((model.predict(x_test) == y_test).mean())
        _write_reference(x_train, outdir, name)
        for fmt in formats:
            entries.append(_entry(_write(model, outdir, name, fmt), name, fmt, 20, {"accuracy": accuracy}))
    holdout = {"X": x_test.tolist(), "y": y_test.tolist()}
    (outdir / "holdout-classification.json").write_text(json.dumps(holdout))
    _write_holdout_csv(outdir / "holdout-classification.csv", holdout)
    return entries


def _write_holdout_csv(path: Path, holdout: dict[str, Any]) -> None:
    """The same rows as CSV (columns f0..f19, label) for spec.validation and `modelrollout validate`."""
    lines = [",".join([*(f"f{i}" for i in range(len(holdout["X"][0]))), "label"])]
    lines += [",".join([*(repr(v) for v in row), str(label)]) for row, label in zip(holdout["X"], holdout["y"],
                                                                                     strict=True)]
    path.write_text("\n".join(lines) + "\n")


def _regression_models(outdir: Path) -> list[dict[str, Any]]:
    x, y = make_regression(n_samples=2000, n_features=20, noise=10.0, random_state=SEED)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED)
    model = Ridge().fit(x_train, y_train)
    mae = float(np.abs(model.predict(x_test) - y_test).mean())
    _write_reference(x_train, outdir, "ridge")
    return [_entry(_write(model, outdir, "ridge", "joblib"), "ridge", "joblib", 20, {"mae": mae})]


def train_all(outdir: Path) -> list[dict[str, Any]]:
    """Write every example model into `outdir` and return the manifest entries."""
    outdir.mkdir(parents=True, exist_ok=True)
    manifest = _classification_models(outdir) + _regression_models(outdir)
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    json.dump(train_all(args.outdir), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
