"""The slow step of tests/e2e/test_kserve.py's slow model version: a scikit-learn FunctionTransformer
function that waits, then passes the rows on unchanged.

A pickled Pipeline stores this function by module and name (`slowstep.pause`), so the server that loads
the model must import it: the slow version's pods get this folder on PYTHONPATH, as a KServe user ships
the code of a custom transformer step beside its model. The wait itself is in the model file
(`kw_args={"seconds": ...}`), not in the server or an environment variable.
"""

from __future__ import annotations

import time
from typing import TypeVar

Rows = TypeVar("Rows")


def pause(rows: Rows, seconds: float) -> Rows:
    time.sleep(seconds)
    return rows
