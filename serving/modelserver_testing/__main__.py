"""`python -m modelserver_testing`: the model server with the MODELSERVER_CHAOS_* faults (testing only)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from modelserver.__main__ import main as server_main
from modelserver_testing import faulty_server, read_faults


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """What `modelserver` returns; 2 for a bad MODELSERVER_CHAOS_* value."""
    try:
        faults = read_faults(os.environ if env is None else env)
    except ValueError as exc:
        print(f"modelserver_testing: error: {exc}", file=sys.stderr)
        return 2
    return server_main(argv, make_server=faulty_server(faults))


if __name__ == "__main__":
    sys.exit(main())
