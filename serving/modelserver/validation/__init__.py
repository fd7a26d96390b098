"""Validation of a candidate model on a holdout dataset, before it receives any traffic.

One implementation, two entry points: `python -m modelserver validate` (what the operator's Job runs,
result in the container's termination message) and `modelrollout validate` (CI: a Markdown report for a
pull-request comment plus a JSON file). Both call `run.validate`.

    config.py      the checks' thresholds (the `checks` part of spec.validation, or a CI YAML file)
    holdout.py     the dataset: CSV with a label column or .npz with X / y, optionally sha256-checked
    datachecks.py  feature count, dtypes, missing values, ranges, duplicates, labels within the classes
    scores.py      accuracy, precision, recall, F1 (macro and per class), prediction distribution distance
    modelchecks.py the candidate against absolute minimums and against the stable (baseline) model
    report.py      the outcome as JSON, Markdown and a compact termination message
"""
