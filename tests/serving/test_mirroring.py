"""Mirroring between two real servers on loopback: a stable server (lr, version 1) copies answered requests to a
candidate (the shuffled-label lr-bad model served as lr version 2), which counts (primary, candidate) class pairs.
The mirror configuration is a file laid out as the kubelet mounts a ConfigMap, changed while the servers run."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localcluster.testing import wait_until
from modelserver import mirror
from modelserver.contract_parse import ModelMetrics, parse_pod_metrics
from modelserver.tokens import TokenSigner

from .conftest import ExampleModels, RunningServer

pytestmark = pytest.mark.unit
Start = Callable[..., RunningServer]


class MountedConfigMap:
    """A ConfigMap volume as the kubelet writes it: `mirror.json -> ..data/mirror.json`, `..data -> ..N`. An update
    writes a new `..N` directory and renames a new `..data` symlink over the old one, so the file's path turns
    to a new inode at once and is never half-written."""

    def __init__(self, root: Path, key: str = "mirror.json") -> None:
        root.mkdir()
        self.root, self.key, self._version = root, key, 0
        (root / key).symlink_to(f"..data/{key}")  # dangling until the first write: the file is missing

    @property
    def path(self) -> str:
        return str(self.root / self.key)

    def write(self, text: str) -> None:
        self._version += 1
        directory = self.root / f"..{self._version}"
        directory.mkdir()
        (directory / self.key).write_text(text)
        staged = self.root / "..data_tmp"
        staged.symlink_to(directory.name)
        os.replace(staged, self.root / "..data")

    def configure(self, target: str, percent: float, version: str = "2") -> None:
        self.write(json.dumps({"target": target, "percent": percent, "version": version}))


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "feedback-key"
    path.write_bytes(b"k" * 32)
    return str(path)


@pytest.fixture
def configmap(tmp_path: Path) -> MountedConfigMap:
    return MountedConfigMap(tmp_path / "mirror")


def _candidate(models: ExampleModels, start: Start, key_file: str) -> RunningServer:
    return start(models.settings("lr-bad.joblib", model_name="lr", model_version="2", feedback_key_file=key_file))


def _stable(models: ExampleModels, start: Start, key_file: str, configmap: MountedConfigMap,
            **overrides: Any) -> RunningServer:
    """Lr version 1, mirroring as the configmap says. The queue holds every copy a test makes unless the test
    sets a smaller one: the candidate, on a thread of this process, answers slower than the primary."""
    settings = {"mirror_queue_size": 2000, **overrides}
    return start(models.settings("lr.joblib", model_version="1", feedback_key_file=key_file,
                                 mirror_config_file=configmap.path, **settings))


def _metrics(server: RunningServer, version: str) -> ModelMetrics:
    found = parse_pod_metrics(server.get("/metrics").text).model("lr", version)
    assert found is not None
    return found


def _settled(server: RunningServer) -> ModelMetrics:
    """The stable's metrics once no copy is queued or being sent: every copy taken is in an outcome.

    A copy is queued before the loop serves the next request, so none can be missing here."""
    return wait_until(lambda: m if (m := _metrics(server, "1")).mirror_pending == 0 else None, 20,
                      "every copy to be sent", describe=lambda: str(_metrics(server, "1")))


def _copies(server: RunningServer) -> int:
    m = _settled(server)
    return int(m.mirror_sent + m.mirror_failed + m.mirror_dropped)


def _wait_percent(server: RunningServer, percent: float, version: str) -> None:
    wait_until(lambda: (m := _metrics(server, "1")).mirror_percent == percent and m.mirror_target_version == version,
               10, f"mirroring at {percent}% to version {version}", describe=lambda: str(_metrics(server, "1")))


def _predict_each(server: RunningServer, rows: list[list[float]]) -> list[int]:
    """One request per row; every answer must be the stable version's 200."""
    predicted = []
    for row in rows:
        answer = server.infer([row])
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == "1"
        predicted.append(answer.json()["outputs"][0]["data"][0])
    return predicted


def _direct(server: RunningServer, rows: list[list[float]]) -> list[int]:
    """The candidate's own classes for `rows`, asked directly (not a copy: no pairs counted)."""
    answer = server.infer(rows)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["outputs"][0]["data"])


def test_at_100_percent_every_answered_request_reaches_the_candidate_which_counts_the_pairs(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap) -> None:
    candidate = _candidate(models, start_server, key_file)
    configmap.configure(candidate.url, 100)
    stable = _stable(models, start_server, key_file, configmap)
    rows = models.holdout()[0][:120]
    primary = _predict_each(stable, rows[:100])
    v1 = stable.post("/v1/models/lr:predict", {"instances": rows[100:]})  # a V1 copy of 20 rows
    assert v1.status_code == 200
    primary += v1.json()["predictions"]
    assert stable.infer([[1.0]]).status_code == 400  # a refused request has no prediction to copy

    settled = _settled(stable)
    assert (settled.mirror_sent, settled.mirror_failed, settled.mirror_dropped) == (101, 0, 0)
    expected = Counter(zip(map(str, primary), map(str, _direct(candidate, rows)), strict=True))
    shadow = _metrics(candidate, "2")
    assert dict(shadow.shadow_pairs) == dict(expected)  # 120 rows: 100 one-row copies and one of 20 rows
    assert sum(shadow.shadow_pairs.values()) == 120 and not shadow.shadow_refused
    assert any(p != c for p, c in expected)  # the shuffled-label model disagrees: pairs off the diagonal
    assert _metrics(candidate, "2").requests_by_code["200"] == 102  # 101 copies + the direct question


def test_at_10_percent_about_a_tenth_of_requests_is_copied(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap) -> None:
    candidate = _candidate(models, start_server, key_file)
    configmap.configure(candidate.url, 10)
    stable = _stable(models, start_server, key_file, configmap)
    row = models.holdout()[0][0]
    for _ in range(1000):
        assert stable.infer([row]).status_code == 200
    # Binomial(1000, 0.1): mean 100, standard deviation 9.5; 60..140 is more than 4 of them either side.
    sent = _settled(stable).mirror_sent
    assert 60 <= sent <= 140, sent
    assert _copies(stable) == sent and sum(_metrics(candidate, "2").shadow_pairs.values()) == sent


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers: a hung candidate."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_full_queue_drops_and_counts_copies_while_every_primary_is_answered_at_once(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap,
        black_hole: str) -> None:
    configmap.configure(black_hole, 100)
    stable = _stable(models, start_server, key_file, configmap, mirror_workers=1, mirror_queue_size=2,
                     mirror_timeout_s=3.0)
    row = models.holdout()[0][0]
    slowest = 0.0
    for _ in range(50):
        started = time.perf_counter()
        assert stable.infer([row]).status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
    # A primary waiting on its copy would take the copy's 3 s timeout: the one worker is stuck on the first.
    assert slowest < 1.5, f"slowest primary {slowest:.2f} s"
    m = _metrics(stable, "1")
    assert (m.mirror_dropped, m.mirror_pending, m.mirror_sent) == (48, 2, 0)  # one being sent, one queued
    m = _settled(stable)  # each of the two times out in turn
    assert (m.mirror_failed, m.mirror_dropped, m.errors) == (2, 48, 0)


def test_config_changes_are_picked_up_without_a_restart_on_then_50_percent_then_invalid_then_off(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap) -> None:
    candidate = _candidate(models, start_server, key_file)
    stable = _stable(models, start_server, key_file, configmap)
    started = _metrics(stable, "1")
    assert (started.mirror_percent, started.mirror_target_version) == (0, "")  # no file yet: off
    row = models.holdout()[0][0]

    configmap.configure(candidate.url, 100)
    _wait_percent(stable, 100, "2")
    _predict_each(stable, [row] * 20)
    assert _settled(stable).mirror_sent == 20

    configmap.configure(candidate.url, 50)
    _wait_percent(stable, 50, "2")
    _predict_each(stable, [row] * 400)
    # Binomial(400, 0.5): mean 200, standard deviation 10.
    at_half = _copies(stable)
    assert 150 <= at_half - 20 <= 250 and _settled(stable).mirror_sent == at_half, at_half

    configmap.write("percent: [not a number")
    _wait_percent(stable, 0, "")
    _predict_each(stable, [row] * 20)
    configmap.write('{"percent": 0}')
    wait_until(lambda: _metrics(stable, "1").mirror_percent == 0 and _config_loads(stable).get("off") == 1, 10,
               "the off configuration to be read")
    _predict_each(stable, [row] * 20)

    configmap.configure(candidate.url, 100)  # on again: one request
    _wait_percent(stable, 100, "2")
    _predict_each(stable, [row])
    assert _copies(stable) == _settled(stable).mirror_sent == at_half + 1  # nothing copied while invalid or off
    assert _config_loads(stable) == {"missing": 1, "on": 3, "invalid": 1, "off": 1}
    assert _metrics(stable, "1").requests_by_code["200"] == 461  # the same process throughout


def _config_loads(server: RunningServer) -> dict[str, float]:
    loads: dict[str, float] = {}
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("modelserver_mirror_config_loads_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            loads[outcome] = float(line.rsplit(" ", 1)[1])
    return loads


def test_a_dead_or_wrong_target_never_fails_the_primary_and_each_copy_counts_as_failed(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    configmap.configure(dead, 100)
    stable = _stable(models, start_server, key_file, configmap)
    rows = models.holdout()[0][:30]
    _predict_each(stable, rows)
    assert _settled(stable).mirror_failed == 30

    # A server that answers 404 (it serves another model name) fails the copies too.
    other = start_server(models.settings("lr-bad.joblib", model_version="2", feedback_key_file=key_file))
    configmap.configure(other.url, 100)
    _wait_percent(stable, 100, "2")
    _predict_each(stable, rows)
    m = _settled(stable)
    assert m.mirror_failed == 60
    assert (m.mirror_sent, m.errors, m.requests_by_code["200"]) == (0, 0, 60)


def test_the_candidate_counts_pairs_only_from_a_verified_token_with_its_own_classes(
        models: ExampleModels, start_server: Start, key_file: str, tmp_path: Path) -> None:
    candidate = _candidate(models, start_server, key_file)
    row = models.holdout()[0][0]
    own_class = str(_direct(candidate, [row])[0])
    rollout_key = TokenSigner(Path(key_file).read_bytes(), 3600.0)
    other_key = TokenSigner(b"x" * 32, 3600.0)
    now = time.time()
    tokens = {
        "verified": rollout_key.sign("lr", "1", ("1",), "id-1", now),
        "foreign class": rollout_key.sign("lr", "1", ("cat</script>",), "id-2", now),
        "two rows": rollout_key.sign("lr", "1", ("0", "1"), "id-3", now),
        "forged": other_key.sign("lr", "1", ("0",), "id-4", now),
        "regressor": rollout_key.sign("lr", "1", (1.5,), "id-5", now),
    }
    body = {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": row}]}

    def copy(token: str | None, version: str = "1") -> requests.Response:
        headers = {"X-Shadow-Of-Version": version, "X-Request-Id": "r"}
        if token is not None:
            headers["X-Primary-Prediction"] = token
        return candidate.post("/v2/models/lr/infer", body, headers=headers)

    answers = [copy(token) for token in tokens.values()]
    answers += [copy(tokens["verified"]), copy(None, version="evil\"} 1 x{y=\""), copy("not.a-token")]
    assert [a.status_code for a in answers] == [200] * 8  # a copy is answered normally whatever its headers
    assert {a.json()["outputs"][0]["data"][0] for a in answers} == {int(own_class)}

    shadow = _metrics(candidate, "2")
    assert dict(shadow.shadow_pairs) == {("1", own_class): 1}
    assert dict(shadow.shadow_refused) == {"unknown_class": 1, "row_mismatch": 1, "bad_token": 2,
                                           "not_classifier": 1, "replayed": 1, "missing_token": 1}
    text = candidate.get("/metrics").text
    assert "cat" not in text and "evil" not in text and "id-1" not in text


def test_a_dead_sender_process_costs_only_copies_and_is_counted_then_starts_again(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap,
        black_hole: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mirror, "RESTART_AFTER_S", 2.0)
    configmap.configure(black_hole, 100)  # copies hang there, so some are inside the process when it dies
    stable = _stable(models, start_server, key_file, configmap, mirror_workers=1, mirror_timeout_s=30.0)
    row = models.holdout()[0][0]
    _predict_each(stable, [row] * 3)
    assert _metrics(stable, "1").mirror_pending == 3
    pid = stable.server.mirror.sender_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    m = _settled(stable)  # the server sees the socket close: the three held copies failed
    assert (m.mirror_failed, m.mirror_sent, m.mirror_dropped) == (3, 0, 0)
    _predict_each(stable, [row] * 5)  # answered as ever; no sender for a while, so the copies are dropped
    m = _settled(stable)
    assert (m.mirror_failed, m.mirror_dropped, m.errors, m.requests_by_code["200"]) == (3, 5, 0, 8)

    candidate = _candidate(models, start_server, key_file)
    configmap.configure(candidate.url, 100)
    _wait_percent(stable, 100, "2")

    def copy_sent() -> bool:
        _predict_each(stable, [row])
        return _settled(stable).mirror_sent > 0

    wait_until(copy_sent, 15, "a new sender process to send a copy")
    assert stable.server.mirror.sender_pid not in (None, pid)


def test_the_sender_process_and_its_threads_only_take_cpu_the_server_leaves(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap,
        black_hole: str) -> None:
    configmap.configure(black_hole, 100)
    stable = _stable(models, start_server, key_file, configmap, mirror_workers=2, mirror_timeout_s=30.0)
    _predict_each(stable, [models.holdout()[0][0]])
    assert _metrics(stable, "1").mirror_pending == 1
    pid = stable.server.mirror.sender_pid
    assert pid is not None

    def threads() -> list[int]:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]

    # The copy waits in the socket pair while the process starts: main, the outcome reporter, two senders.
    wait_until(lambda: len(threads()) >= 4, 15, "the sender process's threads")
    assert {os.sched_getscheduler(tid) for tid in threads()} == {os.SCHED_IDLE}
    assert os.sched_getscheduler(os.getpid()) != os.SCHED_IDLE  # the serving side (this process) is not


def test_a_server_that_does_not_mirror_starts_no_sender_process(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap) -> None:
    unconfigured = start_server(models.settings("lr.joblib", model_version="1"))
    configmap.write('{"percent": 0}')
    off = _stable(models, start_server, key_file, configmap)
    row = models.holdout()[0][0]
    for server in (unconfigured, off):
        _predict_each(server, [row] * 5)
        m = _metrics(server, "1")
        assert (m.mirror_sent, m.mirror_failed, m.mirror_dropped, m.mirror_pending, m.mirror_percent) == (0,) * 5
        assert server.server.mirror.sender_pid is None


def test_labels_posted_to_the_stable_server_reach_the_candidate_as_labelled_pairs(
        models: ExampleModels, start_server: Start, key_file: str, configmap: MountedConfigMap) -> None:
    """A label posted with the stable answer's token is counted for version 1 as usual, and the stable server
    forwards it to the candidate, which joins it to the pairs of that copy: who was right, per row, once."""
    candidate = _candidate(models, start_server, key_file)
    configmap.configure(candidate.url, 100)
    stable = _stable(models, start_server, key_file, configmap)
    rows, labels = models.holdout()
    rows, labels = rows[:60], [int(v) for v in labels[:60]]
    answers = [stable.infer([row]) for row in rows]
    primary = [a.json()["outputs"][0]["data"][0] for a in answers]
    assert _settled(stable).mirror_sent == 60  # every copy answered before its label is sent
    items = [{"token": a.headers["X-Prediction-Token"], "label": label} for a, label in zip(answers, labels,
                                                                                         strict=True)]
    assert stable.post("/v2/models/lr/feedback", {"feedback": items}).status_code == 200
    wait_until(lambda: sum(_metrics(candidate, "2").shadow_labelled.values()) == 60, 20,
               "the forwarded labels to be joined on the candidate",
               describe=lambda: str(_metrics(candidate, "2").shadow_labelled))

    cand = _direct(candidate, rows)
    expected: Counter[str] = Counter()
    for p, c, y in zip(primary, cand, labels, strict=True):
        expected[{(True, True): "both_right", (True, False): "stable_only", (False, True): "candidate_only",
                  (False, False): "both_wrong"}[p == y, c == y]] += 1
    assert dict(_metrics(candidate, "2").shadow_labelled) == dict(expected)
    assert expected["stable_only"] > expected["candidate_only"]  # the shuffled-label model is worse
    stable_feedback = _metrics(stable, "1")
    assert stable_feedback.feedback_correct + stable_feedback.feedback_incorrect == 60  # stable's own count
    # The forwarded labels are never feedback on the candidate.
    cand_own = parse_pod_metrics(candidate.get("/metrics").text).model("lr", "1")
    assert cand_own is None or cand_own.feedback_correct + cand_own.feedback_incorrect == 0
    # The same labels again (a client's retry) are refused by the stable pod and join nothing twice.
    assert stable.post("/v2/models/lr/feedback", {"feedback": items}).status_code == 409
    assert sum(_metrics(candidate, "2").shadow_labelled.values()) == 60
