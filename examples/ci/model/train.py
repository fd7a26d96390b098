"""The ML team's training script, as the CI pipeline runs it (examples/ci/steps/train.sh).

    python model/train.py --params model/params.yaml --out out/candidate

Trains one classifier on the team's data (here make_classification(2000, 20, random_state=42), a stand-in
for a warehouse export) with the estimator and hyperparameters of params.yaml, and writes into --out:

  model.skops     the model (skops: no code runs when it is loaded, so no allowPickle)
  model.json      {"file", "format", "digest", "accuracy", "drift_reference"}: the digests the cluster verifies
  model.drift.json  the training inputs' reference for drift watching (per-feature quantile bins and counts,
                  modelserver.driftref), beside the model, where the server looks for it
  holdout.csv     the held-out quarter (columns f0..f19, label), for `modelrollout validate`
  holdout.json    the same rows as {"X": [...], "y": [...]}, for the staging traffic generator

The split and the data use fixed seeds, so a baseline and a candidate trained from two commits are
judged on the same rows. `labelNoise` flips that share of the training labels (never the holdout's):
it stands for a broken label join, the regression the pipeline must stop.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
import yaml
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from modelserver import driftref

SEED = 42
ESTIMATORS: dict[str, Any] = {"logisticRegression": LogisticRegression, "randomForest": RandomForestClassifier}


def make_estimator(params: dict[str, Any]) -> Any:
    """The estimator params.yaml names, with its hyperparameters.

    >>> make_estimator({"estimator": "randomForest", "hyperparameters": {"n_estimators": 5}}).n_estimators
    5
    """
    name = params.get("estimator", "logisticRegression")
    if name not in ESTIMATORS:
        raise SystemExit(f"params: estimator {name!r} is not one of {sorted(ESTIMATORS)}")
    hyper = dict(params.get("hyperparameters") or {})
    if name == "randomForest":
        hyper.setdefault("random_state", SEED)
    return ESTIMATORS[name](**hyper)


def noisy(labels: np.ndarray, share: float) -> np.ndarray:
    """`labels` with `share` of them flipped (binary labels), at fixed seeded positions."""
    flip = np.random.default_rng(SEED).random(len(labels)) < share
    return np.where(flip, 1 - labels, labels)


def write_holdout(out: Path, x: np.ndarray, y: np.ndarray) -> None:
    header = ",".join([*(f"f{i}" for i in range(x.shape[1])), "label"])
    rows = [",".join([*(repr(float(v)) for v in row), str(int(label))]) for row, label in zip(x, y, strict=True)]
    (out / "holdout.csv").write_text("\n".join([header, *rows]) + "\n")
    (out / "holdout.json").write_text(json.dumps({"X": x.tolist(), "y": [int(v) for v in y]}))


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def train(params: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(n_samples=2000, n_features=20, random_state=SEED)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED)
    model = make_estimator(params).fit(x_train, noisy(y_train, float(params.get("labelNoise", 0.0))))
    path = out / "model.skops"
    skops.io.dump(model, path)
    reference = out / "model.drift.json"  # <model file stem>.drift.json: the server finds it beside the model
    reference.write_text(driftref.build(x_train, [f"f{i}" for i in range(x.shape[1])]).to_json() + "\n")
    write_holdout(out, x_test, y_test)
    entry = {"file": path.name, "format": "skops", "digest": _digest(path),
             "accuracy": float((model.predict(x_test) == y_test).mean()),
             "drift_reference": {"file": reference.name, "digest": _digest(reference)}}
    (out / "model.json").write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    entry = train(yaml.safe_load(args.params.read_text()) or {}, args.out)
    print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
