"""Counting live inputs into the bins of the model's training reference, for the operator's drift watch.

The reference (`modelserver.driftref`) is published beside the model as `<name>.drift.json` (`lr.joblib` ->
`lr.drift.json`), or wherever MODELSERVER_DRIFT_REFERENCE points; with MODELSERVER_DRIFT_REFERENCE_DIGEST it is
verified like the model. A model without a usable reference is served all the same: the state gauge says why
nothing is counted, and the operator reports the drift watch as not available.

The hot path only sets a request's rows aside; they are binned in batches (before each scrape, or every
DriftCounter.FLUSH_ROWS rows) into an in-memory array, by the rule of `driftref.bin_index`. The exported series
are built from that array at scrape time by a collector, so a request increments no Prometheus child.

>>> from modelserver import driftref
>>> ref = driftref.DriftReference(4, (driftref.FeatureReference("a", (0.0, 1.0), (1, 2, 1)),
...                                   driftref.FeatureReference("b", (5.0,), (2, 2))))
>>> counter = DriftCounter(ref)
>>> counter.count(np.array([[-1.0, 5.0], [0.5, 4.0], [2.0, 9.0]]))
>>> counter.counts.tolist()
[[1, 1, 1], [1, 2, 0]]
"""

from __future__ import annotations

import logging
import tempfile
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelserver import contract as c
from modelserver import driftref
from modelserver.loading import LoadError, fetch, sha256_of
from modelserver.settings import Settings

log = logging.getLogger(__name__)
REFERENCE_SUFFIX = ".drift.json"
DISABLED = "none"  # MODELSERVER_DRIFT_REFERENCE=none: never look for a reference


def reference_uri(model_uri: str) -> str:
    """Where the reference of a model published at `model_uri` is: beside it, extension replaced.

    >>> reference_uri("http://store/fraud/2/lr.joblib"), reference_uri("/m/iris.skops")
    ('http://store/fraud/2/lr.drift.json', '/m/iris.drift.json')
    """
    parsed = urllib.parse.urlparse(model_uri)
    path = Path(parsed.path)
    beside = str(path.with_name(path.stem + REFERENCE_SUFFIX))
    return urllib.parse.urlunparse(parsed._replace(path=beside)) if parsed.scheme else beside


@dataclass(frozen=True)
class ReferenceResult:
    state: c.DriftReferenceState
    reference: driftref.DriftReference | None = None
    detail: str = ""  # for the log only: file names and digests stay out of metrics


def load_reference(settings: Settings, n_features: int) -> ReferenceResult:
    """Blocking: find, verify and parse the model's reference; every failure is a state, never an exception."""
    configured = settings.drift_reference
    if configured == DISABLED:
        return ReferenceResult(c.DriftReferenceState.DISABLED)
    uri = configured or reference_uri(settings.model_uri)
    with tempfile.TemporaryDirectory(prefix="modelserver-drift-") as tmp:
        try:
            path = fetch(uri, Path(tmp))
        except LoadError as exc:
            absent = "does not exist" in str(exc) or "HTTP Error 404" in str(exc)
            state = c.DriftReferenceState.MISSING if absent else c.DriftReferenceState.FETCH_FAILED
            return ReferenceResult(state, detail=str(exc))
        digest = sha256_of(path)
        expected = settings.drift_reference_digest
        if expected and digest.lower() != expected.lower():
            return ReferenceResult(c.DriftReferenceState.DIGEST_MISMATCH,
                                   detail=f"{uri}: expected {expected}, file has {digest}")
        text = path.read_text(errors="replace")
    try:
        reference = driftref.parse(text)
    except driftref.ReferenceError as exc:
        return ReferenceResult(c.DriftReferenceState.INVALID, detail=f"{uri}: {exc}")
    if len(reference.features) != n_features:
        return ReferenceResult(c.DriftReferenceState.INVALID,
                               detail=f"{uri}: {len(reference.features)} features, the model takes {n_features}")
    series = sum(f.bins for f in reference.features)
    if series > settings.drift_max_series:
        return ReferenceResult(c.DriftReferenceState.TOO_MANY_SERIES,
                               detail=f"{uri}: {series} feature bins, MODELSERVER_DRIFT_MAX_SERIES is "
                                      f"{settings.drift_max_series}")
    verified = "verified" if expected else "not verified: no MODELSERVER_DRIFT_REFERENCE_DIGEST"
    return ReferenceResult(c.DriftReferenceState.LOADED, reference, detail=f"{uri} ({digest}, {verified})")


class DriftCounter:
    """Live counts per (feature, bin) of one reference, in a features x max-bins array.

    A request's rows are only set aside (`count` is a list append); they are binned in batches - when
    FLUSH_ROWS have gathered, and before every scrape - by one `searchsorted` per feature, which is
    `driftref.bin_index` for a whole column at once. Binning one row at a time cost more than the prediction.
    """

    FLUSH_ROWS = 2048  # bounds the rows held back (and the memory) between scrapes

    def __init__(self, reference: driftref.DriftReference, skip_nan: bool = False) -> None:
        self.reference = reference
        self._edges = [np.asarray(f.edges, dtype=np.float64) for f in reference.features]
        self._counts = np.zeros((len(reference.features), max(f.bins for f in reference.features)), dtype=np.int64)
        self._skip_nan = skip_nan  # a model that takes NaN: a NaN goes to no bin (driftref)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def count(self, rows: np.ndarray) -> None:
        """Add a request's rows (n x features, the model's columns in the reference's order)."""
        self._pending.append(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= self.FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        rows = pending[0] if len(pending) == 1 else np.concatenate(pending)
        for j, edges in enumerate(self._edges):
            column = rows[:, j]
            if self._skip_nan:
                column = column[~np.isnan(column)]
            bins = np.searchsorted(edges, column, side="right")
            self._counts[j, :len(edges) + 1] += np.bincount(bins, minlength=len(edges) + 1)

    @property
    def counts(self) -> np.ndarray:
        self.flush()
        return self._counts

    def families(self, model: str, version: str) -> Iterator[Metric]:
        counts = self.counts
        live = CounterMetricFamily(c.DRIFT_INPUTS.name, c.DRIFT_INPUTS.help, labels=c.DRIFT_INPUTS.labels)
        ref = GaugeMetricFamily(c.DRIFT_REFERENCE_INPUTS.name, c.DRIFT_REFERENCE_INPUTS.help,
                                labels=c.DRIFT_REFERENCE_INPUTS.labels)
        for i, feature in enumerate(self.reference.features):
            for b in range(feature.bins):
                labels = [model, version, feature.name, str(b)]
                live.add_metric(labels, float(counts[i, b]))
                ref.add_metric(labels, float(feature.counts[b]))
        yield live
        yield ref


class DriftCollector:
    """The drift series of this server, empty until a reference is loaded (prometheus_client's collector API)."""

    def __init__(self, model: str, version: str) -> None:
        self._model, self._version = model, version
        self.counter: DriftCounter | None = None

    def collect(self) -> Iterator[Metric]:
        if self.counter is not None:
            yield from self.counter.families(self._model, self._version)

    def describe(self) -> list[Any]:
        return []  # no fixed series: nothing to check at registration
