"""`python -m modelserver` / `modelserver`: serve one model configured by flags or environment."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from modelserver.server import CannotListen, ModelServer, serve
from modelserver.settings import Settings, read_settings
from modelserver.tokens import read_key


def main(argv: Sequence[str] | None = None,
         make_server: Callable[[Settings], ModelServer] = ModelServer) -> int:
    """0 after a graceful stop; 2 for a bad flag or setting, 1 when the port cannot be bound.

    `modelserver validate ...` instead runs one validation of a candidate model on a holdout and exits
    (modelserver/validation/cli.py): what the operator's validation Job runs.

    A model that fails to load does not end the process: the server stays live and unready, retries
    what may heal (a missing or unreadable file), and reports the reason in its log and metrics.

    `make_server` builds the server from the settings; only the tests' fault-injecting wrapper
    (serving/modelserver_testing) passes another.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["validate"]:
        from modelserver.validation.cli import main as validate_main  # only validation Jobs pay for it

        return validate_main(args[1:], prog="modelserver validate", json_default=None)
    settings = read_settings(args)
    if settings.feedback_key_file:
        try:
            read_key(settings.feedback_key_file)
        except (OSError, ValueError) as exc:
            print(f"modelserver: error: MODELSERVER_FEEDBACK_KEY_FILE: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(settings, make_server))
    except CannotListen as exc:
        print(f"modelserver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
