"""The metrics contract between the model server and the operator.

Every metric name, label name and histogram bucket boundary the server exports is defined here once.
The server builds its Prometheus collectors from these definitions and the operator parses a pod's
`/metrics` text with `modelserver.contract_parse.parse_pod_metrics`, so the two cannot drift apart.

This module imports only the standard library: the operator imports it without pulling in
scikit-learn, numpy or aiohttp.

Exposed series (all on the serving port, path `/metrics`):

    modelserver_requests_total{model,version,protocol,code}      infer / predict requests by outcome
    modelserver_request_duration_seconds{model,version}           histogram of those responses' latency
    modelserver_predictions_total{model,version,class}            predicted classes (classifiers)
    modelserver_prediction_value{model,version}                   histogram of predicted values (regressors)
    modelserver_prediction_confidence{model,version}              histogram of the top class probability,
                                                                  observed when a client asks predict_proba
    modelserver_rows_predicted_total{model,version}               rows passed to predict()
    modelserver_feedback_total{model,version,outcome}             ground-truth feedback by outcome
    modelserver_feedback_absolute_error{model,version}            summary (_sum, _count) for regressors
    modelserver_feedback_refused_total{model,version,reason}      feedback items refused, by reason
    modelserver_outcome{model,version,outcome}                    summary (_count, _sum) of the numeric
                                                                  outcomes posted with feedback, per declared name
    modelserver_outcome_squares_total{model,version,outcome}      the sum of their squares
    modelserver_model_info{model,version,digest,format}           1 for the model this pod serves
    modelserver_model_ready{model,version}                        1 when loaded, validated and warmed up
    modelserver_model_load_failures_total{model,version,reason}   failed load attempts by reason
    modelserver_unknown_model_requests_total                      requests naming a model not served here
    modelserver_mirror_requests_total{model,version,outcome}      copies of requests sent to a shadow candidate
    modelserver_mirror_percent{model,version,target_version}      the mirror configuration in force (0: off)
    modelserver_mirror_pending{model,version}                     copies queued or being sent
    modelserver_mirror_config_loads_total{model,version,outcome}  mirror configuration (re)reads by outcome
    modelserver_shadow_pairs_total{model,version,primary_class,candidate_class}
                                                                  on a candidate: rows of mirrored copies by
                                                                  (the primary's class, this model's class)
    modelserver_shadow_refused_total{model,version,reason}        copies whose primary prediction was not counted
    modelserver_shadow_labelled_pairs_total{model,version,outcome}
                                                                  on a candidate: labelled rows of mirrored copies
                                                                  by who was right (both, stable, candidate, neither)
    modelserver_drift_inputs_total{model,version,feature,bin}     live input values by bin of the model's
                                                                  training reference (drift watching)
    modelserver_drift_reference_inputs{model,version,feature,bin} training rows in that bin (the reference)
    modelserver_drift_reference_state{model,version,state}        1 for the reference's state (loaded, missing,
                                                                  invalid, digest_mismatch, too_many_series, ...)

Feedback carrying a prediction token is counted under the `version` the verified token names (the
version that made the prediction, on whichever pod of the rollout the label arrives): only versions
this rollout's key signed, at most tokens.MAX_VERSIONS per pod. Every other series' `version` is the
pod's own. The operator sums the feedback series of a version over all pods of the rollout.

Label values never come from request content: `model` and `version` are the configured ones, `class`
values are the model's own `classes_` (`primary_class` and `candidate_class` too: a copy naming a class outside
them is refused, not counted), `code`, `outcome` and `reason` come from fixed sets, except the numeric outcomes'
`outcome`, which is one of the names the server was started with (MODELSERVER_OUTCOMES: an item naming another is
refused, not counted); `target_version` is the candidate version of the mirror configuration file the operator
writes, one series at a time; `feature` and `bin` come from the model's drift reference file only (names it lists,
bin numbers 0..bins-1), at most MODELSERVER_DRIFT_MAX_SERIES series. A request
for an unknown model only increments the unlabelled `modelserver_unknown_model_requests_total`.

Errors: a 5xx answer of an infer/predict endpoint is a model error. A 4xx is a client's mistake and is
not the model's fault: it is counted under its own code so it stays visible, but not as an error.
A client that closes its connection before its request was read (a load balancer timing out, a mobile
client going away) gets no answer at all: it is counted under code="499" (nginx's "client closed
request"), without a latency, and the parser keeps it out of both requests and errors, so a burst of
aborted uploads cannot roll a healthy canary back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Label names.
MODEL = "model"
VERSION = "version"
PROTOCOL = "protocol"
CODE = "code"
CLASS = "class"
OUTCOME = "outcome"
DIGEST = "digest"
FORMAT = "format"
REASON = "reason"
TARGET_VERSION = "target_version"
PRIMARY_CLASS = "primary_class"
CANDIDATE_CLASS = "candidate_class"
FEATURE = "feature"
BIN = "bin"
STATE = "state"

# Histogram boundaries in seconds for millisecond-scale models: dense from 0.5 ms to 25 ms where a
# linear model or a small forest answers, sparser up to 5 s to still place a stalled request.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
# Regressor outputs have no natural scale; symmetric decades cover most targets while keeping the
# number of series small. A rollout compares the two versions' distributions, not absolute values.
VALUE_BUCKETS: tuple[float, ...] = (
    -1000.0, -100.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 100.0, 1000.0,
)
CONFIDENCE_BUCKETS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric. `name` is the family name; counters are exposed as `name + "_total"`."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def sample(self) -> str:
        """The sample name a counter is exposed under (`..._total`); the family name otherwise."""
        return self.name + "_total" if self.kind is Kind.COUNTER else self.name


REQUESTS = MetricSpec(
    "modelserver_requests", Kind.COUNTER,
    "Inference requests by HTTP status code (5xx: model errors, 4xx: client errors, "
    "499: the client disconnected before its request was read).",
    (MODEL, VERSION, PROTOCOL, CODE),
)
REQUEST_DURATION = MetricSpec(
    "modelserver_request_duration_seconds", Kind.HISTOGRAM,
    "Time from receiving an inference request to having its response ready, all answered status codes.",
    (MODEL, VERSION), LATENCY_BUCKETS,
)
PREDICTIONS = MetricSpec(
    "modelserver_predictions", Kind.COUNTER,
    "Predicted rows by class; class values are the model's classes_.",
    (MODEL, VERSION, CLASS),
)
PREDICTION_VALUE = MetricSpec(
    "modelserver_prediction_value", Kind.HISTOGRAM,
    "Predicted values of a regressor.", (MODEL, VERSION), VALUE_BUCKETS,
)
PREDICTION_CONFIDENCE = MetricSpec(
    "modelserver_prediction_confidence", Kind.HISTOGRAM,
    "Highest class probability of rows for which a client requested predict_proba.",
    (MODEL, VERSION), CONFIDENCE_BUCKETS,
)
ROWS_PREDICTED = MetricSpec(
    "modelserver_rows_predicted", Kind.COUNTER, "Rows passed to the model's predict().", (MODEL, VERSION),
)
FEEDBACK = MetricSpec(
    "modelserver_feedback", Kind.COUNTER,
    "Ground-truth feedback by outcome, under the version that made the prediction (from its token).",
    (MODEL, VERSION, OUTCOME),
)
FEEDBACK_REFUSED = MetricSpec(
    "modelserver_feedback_refused", Kind.COUNTER,
    "Feedback items refused: a prediction token malformed, forged, expired or replayed, or a numeric outcome "
    "with an undeclared name or a value that is not a finite number.",
    (MODEL, VERSION, REASON),
)
# Numeric outcomes posted with feedback (revenue, a rating, a conversion 0/1), per request: a summary's _count and
# _sum (the sum may fall: an outcome can be negative, so it cannot be a counter), and the squares beside them,
# which is all an A/B experiment needs of them (n, sum, sum of squares: the mean and the variance).
OUTCOME_VALUES = MetricSpec(
    "modelserver_outcome", Kind.SUMMARY,
    "Numeric outcomes posted with feedback, one per prediction token and declared outcome name, under the "
    "version that made the prediction; outcome values are the names in MODELSERVER_OUTCOMES.",
    (MODEL, VERSION, OUTCOME),
)
OUTCOME_SQUARES = MetricSpec(
    "modelserver_outcome_squares", Kind.COUNTER,
    "The sum of the squares of the numeric outcomes in modelserver_outcome (for their variance).",
    (MODEL, VERSION, OUTCOME),
)
FEEDBACK_ABSOLUTE_ERROR = MetricSpec(
    "modelserver_feedback_absolute_error", Kind.SUMMARY,
    "Absolute error of a regressor's prediction against fed-back truth.", (MODEL, VERSION),
)
MODEL_INFO = MetricSpec(
    "modelserver_model_info", Kind.GAUGE, "The model this pod serves (always 1).",
    (MODEL, VERSION, DIGEST, FORMAT),
)
MODEL_READY = MetricSpec(
    "modelserver_model_ready", Kind.GAUGE, "1 when the model is loaded, validated and warmed up.",
    (MODEL, VERSION),
)
LOAD_FAILURES = MetricSpec(
    "modelserver_model_load_failures", Kind.COUNTER, "Failed model load attempts by reason.",
    (MODEL, VERSION, REASON),
)
UNKNOWN_MODEL_REQUESTS = MetricSpec(
    "modelserver_unknown_model_requests", Kind.COUNTER,
    "Requests naming a model or version this pod does not serve (no model label, by design).", (),
)

MIRROR_REQUESTS = MetricSpec(
    "modelserver_mirror_requests", Kind.COUNTER,
    "Copies of answered requests for the shadow candidate: sent (it answered 2xx), failed (error, timeout or "
    "non-2xx answer) or dropped (the mirror queue was full).",
    (MODEL, VERSION, OUTCOME),
)
MIRROR_PERCENT = MetricSpec(
    "modelserver_mirror_percent", Kind.GAUGE,
    "Percentage of answered requests copied to the candidate version target_version (0 and target_version=\"\" "
    "when mirroring is off); exactly one series.",
    (MODEL, VERSION, TARGET_VERSION),
)
MIRROR_PENDING = MetricSpec(
    "modelserver_mirror_pending", Kind.GAUGE,
    "Copies for the shadow candidate queued or being sent (at most MODELSERVER_MIRROR_QUEUE_SIZE); each then "
    "ends in one modelserver_mirror_requests_total outcome.",
    (MODEL, VERSION),
)
MIRROR_CONFIG_LOADS = MetricSpec(
    "modelserver_mirror_config_loads", Kind.COUNTER,
    "Changes of the mirror configuration file seen by the server, by outcome (on, off, missing, invalid); "
    "missing and invalid turn mirroring off.",
    (MODEL, VERSION, OUTCOME),
)
SHADOW_PAIRS = MetricSpec(
    "modelserver_shadow_pairs", Kind.COUNTER,
    "On a shadow candidate: rows of mirrored copies by the primary's predicted class (from its verified "
    "prediction token) and this model's; both from the model's classes_.",
    (MODEL, VERSION, PRIMARY_CLASS, CANDIDATE_CLASS),
)
SHADOW_REFUSED = MetricSpec(
    "modelserver_shadow_refused", Kind.COUNTER,
    "Mirrored copies answered but not counted as pairs, by reason.",
    (MODEL, VERSION, REASON),
)

SHADOW_LABELLED_PAIRS = MetricSpec(
    "modelserver_shadow_labelled_pairs", Kind.COUNTER,
    "On a shadow candidate: rows of mirrored copies whose label arrived (feedback forwarded by the stable pods), "
    "by who predicted it: both_right, stable_only, candidate_only, both_wrong.",
    (MODEL, VERSION, OUTCOME),
)

DRIFT_INPUTS = MetricSpec(
    "modelserver_drift_inputs", Kind.COUNTER,
    "Live input values by feature and bin of the model's training reference (<model>.drift.json); feature "
    "names and bins come from that file only.",
    (MODEL, VERSION, FEATURE, BIN),
)
DRIFT_REFERENCE_INPUTS = MetricSpec(
    "modelserver_drift_reference_inputs", Kind.GAUGE,
    "Training rows by feature and bin in the model's drift reference: what the live counts are compared with.",
    (MODEL, VERSION, FEATURE, BIN),
)
DRIFT_REFERENCE_STATE = MetricSpec(
    "modelserver_drift_reference_state", Kind.GAUGE,
    "1 for the state of the model's drift reference (loaded, or why no input is counted); exactly one series.",
    (MODEL, VERSION, STATE),
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    REQUESTS, REQUEST_DURATION, PREDICTIONS, PREDICTION_VALUE, PREDICTION_CONFIDENCE, ROWS_PREDICTED,
    FEEDBACK, FEEDBACK_ABSOLUTE_ERROR, FEEDBACK_REFUSED, OUTCOME_VALUES, OUTCOME_SQUARES, MODEL_INFO, MODEL_READY,
    LOAD_FAILURES, UNKNOWN_MODEL_REQUESTS,
    MIRROR_REQUESTS, MIRROR_PERCENT, MIRROR_PENDING, MIRROR_CONFIG_LOADS, SHADOW_PAIRS, SHADOW_REFUSED,
    SHADOW_LABELLED_PAIRS, DRIFT_REFERENCE_STATE,
)
# Exported by the drift counter's own collector (modelserver.drift), as arrays rather than one child per series.
DRIFT_METRICS: tuple[MetricSpec, ...] = (DRIFT_INPUTS, DRIFT_REFERENCE_INPUTS)


class Protocol(StrEnum):
    V2 = "v2"
    V1 = "v1"


class FeedbackOutcome(StrEnum):
    CORRECT = "correct"  # classifier: fed-back label equals the predicted class
    INCORRECT = "incorrect"
    SCORED = "scored"  # regressor: absolute error recorded in FEEDBACK_ABSOLUTE_ERROR
    UNKNOWN_ID = "unknown_id"  # never seen, or evicted from the bounded store
    EXPIRED_ID = "expired_id"  # seen, but older than the store's time to live
    INVALID = "invalid"  # per item: a label not a class / not a number, or the wrong count; entry kept


class FeedbackRefusal(StrEnum):
    """Why a feedback item was refused: its prediction token or its numeric outcome (the whole request is
    answered 4xx and nothing of it counted)."""

    MALFORMED = "malformed"  # not a token of this server's format
    BAD_SIGNATURE = "bad_signature"  # not signed with this rollout's key: forged, altered, another rollout
    WRONG_MODEL = "wrong_model"  # signed for another model than the URL's
    EXPIRED = "expired"  # older than MODELSERVER_FEEDBACK_TTL_S (or from the future beyond clock skew)
    REPLAYED = "replayed"  # already scored by this pod (or twice in one request)
    TOO_MANY_VERSIONS = "too_many_versions"  # a version beyond the bounded set this pod counts under
    UNDECLARED_OUTCOME = "undeclared_outcome"  # an outcome name not in MODELSERVER_OUTCOMES
    INVALID_OUTCOME = "invalid_outcome"  # an outcome value that is not a finite number


# The HTTP status a request gets for its first refused item.
REFUSAL_STATUS: dict[FeedbackRefusal, int] = {
    FeedbackRefusal.MALFORMED: 400, FeedbackRefusal.BAD_SIGNATURE: 403, FeedbackRefusal.WRONG_MODEL: 403,
    FeedbackRefusal.EXPIRED: 410, FeedbackRefusal.REPLAYED: 409, FeedbackRefusal.TOO_MANY_VERSIONS: 422,
    FeedbackRefusal.UNDECLARED_OUTCOME: 422, FeedbackRefusal.INVALID_OUTCOME: 422,
}

# Numeric outcome names (MODELSERVER_OUTCOMES, and the operator's spec.strategy.abTest.goal.outcome): they become
# label values, so a short fixed alphabet, and a few per server at most.
OUTCOME_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
MAX_OUTCOMES = 16


class MirrorOutcome(StrEnum):
    """What became of one copy of a request meant for the shadow candidate."""

    SENT = "sent"  # the candidate answered 2xx
    FAILED = "failed"  # connection error, timeout, or a non-2xx answer
    DROPPED = "dropped"  # the bounded queue was full (or the server stopping): never sent


class MirrorConfigOutcome(StrEnum):
    """What a changed mirror configuration file did."""

    ON = "on"  # valid, percentage above 0: mirroring on (or changed)
    OFF = "off"  # valid, percentage 0
    MISSING = "missing"  # no file at the path: off
    INVALID = "invalid"  # unreadable or not a valid configuration: off


class ShadowRefusal(StrEnum):
    """Why a mirrored copy, answered normally, was not counted as (primary, candidate) pairs."""

    MISSING_TOKEN = "missing_token"  # no primary prediction token on the copy
    BAD_TOKEN = "bad_token"  # malformed, not signed with the rollout's key, another model's, or expired
    REPLAYED = "replayed"  # this copy's token was already counted by this pod
    NOT_CLASSIFIER = "not_classifier"  # the primary or this model is a regressor: no classes to pair
    UNKNOWN_CLASS = "unknown_class"  # the primary predicted a class this model does not have
    ROW_MISMATCH = "row_mismatch"  # the primary predicted a different number of rows


class ShadowLabelOutcome(StrEnum):
    """One labelled row of a mirrored copy: which of the two versions predicted the label."""

    BOTH_RIGHT = "both_right"
    STABLE_ONLY = "stable_only"  # the primary (stable) was right, the candidate wrong
    CANDIDATE_ONLY = "candidate_only"
    BOTH_WRONG = "both_wrong"


class DriftReferenceState(StrEnum):
    """Whether the server counts live inputs for drift watching, and if not why (never a load failure)."""

    LOADED = "loaded"  # counting into the reference's bins
    LOADING = "loading"  # the model (and so its reference) is not loaded yet
    DISABLED = "disabled"  # MODELSERVER_DRIFT_REFERENCE=none
    MISSING = "missing"  # no <model>.drift.json beside the model (or at MODELSERVER_DRIFT_REFERENCE)
    FETCH_FAILED = "fetch_failed"  # it could not be read (other than absent)
    DIGEST_MISMATCH = "digest_mismatch"  # MODELSERVER_DRIFT_REFERENCE_DIGEST differs from the file's
    INVALID = "invalid"  # not a reference (driftref.parse), or not as many features as the model takes
    TOO_MANY_SERIES = "too_many_series"  # features x bins above MODELSERVER_DRIFT_MAX_SERIES: nothing counted


class LoadFailure(StrEnum):
    FETCH = "fetch_failed"
    PICKLE_NOT_ALLOWED = "pickle_not_allowed"  # a joblib/pickle file without MODEL_ALLOW_PICKLE
    MISSING_DIGEST = "missing_digest"
    DIGEST_MISMATCH = "digest_mismatch"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNTRUSTED_TYPES = "untrusted_types"
    DESERIALIZE = "deserialize_failed"
    VALIDATION = "validation_failed"
    WARMUP = "warmup_failed"


class ModelState(StrEnum):
    """The model's load state, in the readiness answer of a model that is not Ready (see READINESS_FIELDS)."""

    LOADING = "loading"  # fetching, verifying, validating or warming up; a fetch failure is retried
    READY = "ready"  # serving (not Ready only while draining after SIGTERM)
    FAILED = "failed"  # a load failure the server does not retry: only a new pod spec can fix it


# The JSON body of GET /v2/health/ready and /v2/models/<name>/ready. A Ready model answers 200
# {"ready": true}; one that is not answers 503 {"ready": false, "state": <ModelState>, "reason": <LoadFailure
# or "">}. The reason is only the code: file names, URIs and digests stay in the log. The operator reads it from
# the pod's IP to say why a version's pods are not Ready, and rolls back at once on state "failed".
READINESS_FIELDS = ("ready", "state", "reason")


# Not an HTTP status anyone receives: the request was abandoned by its client before it was read.
CLIENT_CLOSED_REQUEST = 499


def is_model_error(code: int) -> bool:
    """A response that counts against the model: any 5xx. A 4xx is the client's mistake.

    >>> is_model_error(500), is_model_error(503), is_model_error(422), is_model_error(200)
    (True, True, False, False)
    """
    return 500 <= code <= 599


def is_client_error(code: int) -> bool:
    """A client's mistake that was answered; a disconnect (499) was not answered, so it is not one.

    >>> is_client_error(400), is_client_error(413), is_client_error(499), is_client_error(500)
    (True, True, False, False)
    """
    return 400 <= code <= 499 and code != CLIENT_CLOSED_REQUEST
