"""Built-in PromQL for another model server's metrics (pure): the names of `spec.serving.metrics`.

Same shapes as the built-in queries over this project's server (promql.py), so the answers become the
same counts. A version is selected by the mapping's `versionLabel` (for the foreign presets the target
label `rollout_version`, which the scrape job copies from the pod label `modelrollout.dev/version`) and
the pod's namespace; the request counters also by the model label.

>>> from modelrollout.core.servermetrics import ServerMetrics
>>> qs = server_queries("iris", ServerMetrics.from_spec({"preset": "mlserver"}))
>>> print(qs["errors"].template)
sum(increase(model_infer_request_failure_total{namespace="{{namespace}}",rollout_version="{{version}}",model="iris"}[{{interval}}]))
"""

from __future__ import annotations

from modelrollout.core.servermetrics import ServerMetrics
from modelrollout.sources.promql import NAMESPACE_LABEL, Query, Shape


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _selector(m: ServerMetrics, extra: dict[str, str], regex: dict[str, str] | None = None) -> str:
    """`{namespace="{{namespace}}",<versionLabel>="{{version}}",...}` with exact and regex matchers."""
    parts = [f'{NAMESPACE_LABEL}="{{{{namespace}}}}"', f'{m.version_label}="{{{{version}}}}"']
    parts += [f"{k}={_quote(v)}" for k, v in extra.items()]
    parts += [f"{k}=~{_quote(v)}" for k, v in (regex or {}).items()]
    return "{" + ",".join(parts) + "}"


def server_queries(model: str, m: ServerMetrics) -> dict[str, Query]:
    """requests (and errors) and, with a latency histogram, latencyBuckets, by the mapping's names."""
    own = {m.model_label: model} if m.model_label else {}
    queries: dict[str, Query] = {}
    if m.success_counter is not None and m.failure_counter is not None:
        # Two sums added, not one {__name__=~"a|b"} selector: increase() drops the names, and the
        # success and failure series of one pod would then collide as one labelset.
        ok, failed = (f"sum(increase({name}{_selector(m, own)}[{{{{interval}}}}]))"
                      for name in (m.success_counter, m.failure_counter))
        queries["requests"] = Query("requests", Shape.COUNT, f"{ok} + {failed}", "requests")
        queries["errors"] = Query("errors", Shape.COUNT, failed, "errors")
    elif m.error_code_label is not None:
        queries["requests"] = Query(
            "requests", Shape.BY_CODE,
            f"sum by ({m.error_code_label}) (increase({m.request_counter}{_selector(m, own)}[{{{{interval}}}}]))",
            label=m.error_code_label)
    else:
        queries["requests"] = Query("requests", Shape.COUNT,
                                    f"sum(increase({m.request_counter}{_selector(m, own)}[{{{{interval}}}}]))",
                                    "requests")
    if m.latency_histogram is not None:
        queries["latencyBuckets"] = Query(
            "latencyBuckets", Shape.BY_LE,
            f"sum by (le) (increase({m.latency_histogram}_bucket{_selector(m, {}, dict(m.latency_match))}"
            f"[{{{{interval}}}}]))")
    return queries
