"""`python -m modelserver` / `modelserver`: serve one model configured by flags or environment."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from modelserver.server import serve
from modelserver.settings import read_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = read_settings(argv)
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
