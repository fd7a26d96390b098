"""`python -m modelrollout.crdgen [--check]`: write both copies of the CRD, or only say whether they are current."""

from __future__ import annotations

import argparse
import sys

from modelrollout.crdgen.generate import OUTPUTS, ROOT, CrdError, render, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelrollout.crdgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed copy differs from the output")
    args = parser.parse_args(argv)
    try:
        if args.check:
            text = render()
            stale = [str(out) for out in OUTPUTS if (ROOT / out).read_text() != text]
            if stale:
                print(f"out of date (run make crd): {', '.join(stale)}", file=sys.stderr)
                return 1
            return 0
        for path in write():
            print(f"wrote {path.relative_to(ROOT)}")
    except (CrdError, FileNotFoundError) as error:
        print(f"crdgen: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
