"""The command line of a validation run, shared by both entry points:

    modelrollout validate --baseline A --candidate B --data holdout.csv --config validation.yaml
    python -m modelserver validate ... --config-json '{...}' --termination-log /dev/termination-log

prints the Markdown report, writes the JSON report (--json), and exits 0 when every check passed,
1 when one failed or the data or a model could not be read, 2 for a usage error (bad flags or config,
a --data path that does not exist).
The operator's Job uses the second form: the result goes to the container's termination message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelserver.validation.config import ValidationConfig
from modelserver.validation.report import Report
from modelserver.validation.run import ModelRef, validate

USAGE_ERROR = 2


def parser(prog: str, json_default: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Validate a candidate model against the stable one on a "
                                "holdout dataset (docs/modelrollout.md, spec.validation).")
    for role in ("baseline", "candidate"):
        p.add_argument(f"--{role}", required=True, help=f"the {role} model file: path, file:// or http(s):// URL")
        p.add_argument(f"--{role}-digest", default="", help="its expected sha256:<hex> (required for joblib)")
        p.add_argument(f"--{role}-format", default="auto", help="auto (from the extension), joblib, pickle, skops")
        p.add_argument(f"--{role}-allow-pickle", action="store_true", help="open it if it is a joblib/pickle file")
    p.add_argument("--allow-pickle", action="store_true",
                   help="open joblib/pickle files, which run code when loaded (both models)")
    p.add_argument("--trusted-types", default="", help="comma-separated extra types a skops file may contain")
    p.add_argument("--data", required=True, help="holdout: .csv with a label column or .npz with X and y")
    p.add_argument("--data-sha256", default=None, help="expected sha256 of the holdout (required for a URL)")
    config = p.add_mutually_exclusive_group()
    config.add_argument("--config", type=Path, help="YAML file with the checks (the shape of spec.validation.checks)")
    config.add_argument("--config-json", help="the checks as a JSON object")
    p.add_argument("--json", dest="json_out", default=json_default, help="write the JSON report here")
    p.add_argument("--termination-log", type=Path, help="also write the compact result here (Kubernetes Jobs)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "modelrollout validate",
         json_default: str | None = "validation-report.json") -> int:
    args = parser(prog, json_default).parse_args(argv)  # exits 2 on bad flags
    try:
        # --config-json is how the operator's Job passes spec.validation.checks: errors name that field.
        where = "spec.validation.checks" if args.config_json is not None else "config"
        config = ValidationConfig.from_dict(_config_mapping(args), where=where)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if "://" not in args.data and not Path(args.data).is_file():
        print(f"{prog}: --data {args.data}: no such file", file=sys.stderr)
        return USAGE_ERROR
    report = validate(_ref(args, "baseline"), _ref(args, "candidate"), args.data, config, args.data_sha256)
    return _emit(report, args)


def _config_mapping(args: argparse.Namespace) -> dict[str, Any]:
    if args.config_json is not None:
        loaded = json.loads(args.config_json)
    elif args.config is not None:
        loaded = yaml.safe_load(args.config.read_text())
    else:
        loaded = {}
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError("the checks must be a mapping")
    return loaded


def _ref(args: argparse.Namespace, role: str) -> ModelRef:
    return ModelRef(uri=getattr(args, role), digest=getattr(args, f"{role}_digest"),
                    format=getattr(args, f"{role}_format"),
                    allow_pickle=args.allow_pickle or getattr(args, f"{role}_allow_pickle"),
                    trusted_types=args.trusted_types)


def _emit(report: Report, args: argparse.Namespace) -> int:
    print(report.to_markdown())
    if args.json_out:
        Path(args.json_out).write_text(report.to_json() + "\n")
    if args.termination_log is not None:
        args.termination_log.write_text(report.termination_message())
    return 0 if report.passed else 1


def modelrollout_main(argv: Sequence[str] | None = None) -> int:
    """`modelrollout` console script: `modelrollout validate ...` (the only subcommand so far)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "validate":
        print("usage: modelrollout validate --baseline A --candidate B --data holdout.csv --config validation.yaml",
              file=sys.stderr)
        return USAGE_ERROR
    return main(args[1:])
