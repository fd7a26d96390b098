"""The mirror configuration file: parsing (each bad field named), reading (missing or bad = off, never raises), the
watcher (one application and one log line per change, the kubelet's symlink swap seen), sampling and the queue."""

from __future__ import annotations

import asyncio
import doctest
import logging
import os
import random
import socket
from pathlib import Path

import pytest

from modelserver import mirror as mirror_module
from modelserver import mirror_config, shadow
from modelserver.contract import MirrorConfigOutcome, MirrorOutcome, ShadowRefusal
from modelserver.contract_parse import parse_pod_metrics
from modelserver.metrics import ServerMetrics
from modelserver.mirror import Mirror
from modelserver.mirror_config import (
    OFF,
    MirrorConfig,
    MirrorConfigError,
    MirrorConfigWatcher,
    parse_mirror_config,
    read_mirror_config,
)
from modelserver.mirror_send import Copy
from modelserver.settings import Settings, read_settings
from modelserver.shadow import pairs_of
from modelserver.tokens import VerifiedToken

pytestmark = pytest.mark.unit
Outcomes = tuple[float, float, float, float]  # sent, failed, dropped, pending


@pytest.mark.parametrize(("text", "expected"), [
    ('{"target": "http://iris-canary.models.svc:8080", "percent": 25, "version": "2"}',
     MirrorConfig("http://iris-canary.models.svc:8080", 25.0, "2")),
    ("target: https://cand/\npercent: 100\nversion: 2\n", MirrorConfig("https://cand", 100.0, "2")),
    ("target: http://10.0.0.7:8080/prefix/\npercent: 0.5\nversion: v2.1-rc_1\n",
     MirrorConfig("http://10.0.0.7:8080/prefix", 0.5, "v2.1-rc_1")),
    ('{"percent": 0}', OFF),
    ('{"target": "http://cand:8080", "percent": 0, "version": "2"}', MirrorConfig("http://cand:8080", 0.0, "2")),
    # An A/B experiment's outcome names, with mirroring off or on
    ("percent: 0\noutcomes: [revenue, rating]\n", MirrorConfig("", 0.0, "", ("revenue", "rating"))),
    ('{"target": "http://c", "percent": 5, "version": "2", "outcomes": ["revenue"]}',
     MirrorConfig("http://c", 5.0, "2", ("revenue",))),
    ("percent: 0\noutcomes: [revenue]\nsticky: {cookie: modelrollout-arm, maxAge: 86400}\n",
     MirrorConfig("", 0.0, "", ("revenue",), "modelrollout-arm", 86400)),
])
def test_valid_configurations_parse(text: str, expected: MirrorConfig) -> None:
    assert parse_mirror_config(text) == expected


@pytest.mark.parametrize(("text", "field"), [
    ("", "must be a mapping"),
    ("[1, 2]", "must be a mapping"),
    ("percent: [oops", "not JSON or YAML"),
    ('{"target": "http://c", "percent": 10, "version": "2", "percentage": 5}', "unknown field(s) percentage"),
    ('{"target": "http://c", "version": "2"}', "percent:"),
    ('{"target": "http://c", "percent": -1, "version": "2"}', "percent:"),
    ('{"target": "http://c", "percent": 100.5, "version": "2"}', "percent:"),
    ('{"target": "http://c", "percent": "50", "version": "2"}', "percent:"),
    ("target: http://c\npercent: yes\nversion: '2'", "percent:"),
    ("target: http://c\npercent: .nan\nversion: '2'", "percent:"),
    ('{"percent": 10, "version": "2"}', "target:"),
    ('{"target": "cand:8080", "percent": 10, "version": "2"}', "target:"),
    ('{"target": "ftp://cand", "percent": 10, "version": "2"}', "target:"),
    ('{"target": "http://cand?x=1", "percent": 10, "version": "2"}', "target:"),
    ('{"target": "http://cand:99999", "percent": 10, "version": "2"}', "target: bad port"),
    ('{"target": "http://cand", "percent": 10}', "version:"),
    ('{"target": "http://cand", "percent": 10, "version": "two words"}', "version:"),
    ('{"target": "http://cand", "percent": 10, "version": "' + "v" * 64 + '"}', "version:"),
    ('{"target": "http://cand", "percent": 0, "version": ""}', "version:"),
    ("percent: 0\noutcomes: revenue", "outcomes: must be a list"),
    ("percent: 0\noutcomes: [Revenue]", "outcomes: 'Revenue' must match"),
    ("percent: 0\noutcomes: [1]", "outcomes: 1 must match"),
    ("percent: 0\noutcomes: [a, a]", "outcomes: a name appears twice"),
    ("percent: 0\nsticky: arm", "sticky: must be {cookie, maxAge}"),
    ("percent: 0\nsticky: {cookie: arm, maxAge: 60, path: /}", "sticky: must be {cookie, maxAge}"),
    ("percent: 0\nsticky: {cookie: 'a=b', maxAge: 60}", "sticky.cookie: must match"),
    ("percent: 0\nsticky: {cookie: arm, maxAge: 0}", "sticky.maxAge: must be whole seconds"),
    ("percent: 0\nsticky: {cookie: arm, maxAge: 1.5}", "sticky.maxAge: must be whole seconds"),
    ("percent: 0\noutcomes: [" + ", ".join(f"o{i}" for i in range(17)) + "]", "outcomes: must be a list of at most 16"),
])
def test_invalid_configurations_name_the_field(text: str, field: str) -> None:
    with pytest.raises(MirrorConfigError) as caught:
        parse_mirror_config(text)
    assert field in str(caught.value), caught.value


def test_a_missing_unreadable_oversized_or_bad_file_is_off_and_says_why(tmp_path: Path) -> None:
    assert read_mirror_config(str(tmp_path / "none.json"))[:2] == (OFF, MirrorConfigOutcome.MISSING)
    assert read_mirror_config(str(tmp_path))[:2] == (OFF, MirrorConfigOutcome.INVALID)  # a directory
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 70_000)
    assert read_mirror_config(str(big))[:2] == (OFF, MirrorConfigOutcome.INVALID)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    assert read_mirror_config(str(binary))[:2] == (OFF, MirrorConfigOutcome.INVALID)
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000)
    config, outcome, detail = read_mirror_config(str(deep))
    assert (config, outcome) == (OFF, MirrorConfigOutcome.INVALID) and str(deep) in detail
    good = tmp_path / "good.json"
    good.write_text('{"target": "http://c:1", "percent": 5, "version": "2"}')
    assert read_mirror_config(str(good))[:2] == (MirrorConfig("http://c:1", 5.0, "2"), MirrorConfigOutcome.ON)


def _swap(root: Path, n: int, text: str | None) -> None:
    """The kubelet's update: a new timestamped directory, then `..data` renamed over to point at it."""
    directory = root / f"..{n}"
    directory.mkdir()
    if text is not None:
        (directory / "mirror.json").write_text(text)
    (root / "..data_tmp").symlink_to(directory.name)
    os.replace(root / "..data_tmp", root / "..data")


def test_the_watcher_applies_each_change_once_with_one_log_line_and_sees_the_kubelet_swap(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    (root / "mirror.json").symlink_to("..data/mirror.json")
    applied: list[MirrorConfig] = []
    counted: list[MirrorConfigOutcome] = []
    watcher = MirrorConfigWatcher(str(root / "mirror.json"), applied.append, counted.append)
    caplog.set_level(logging.INFO, logger="modelserver.mirror_config")

    assert watcher.poll() and not watcher.poll()  # missing: applied once, then nothing changes
    _swap(root, 1, '{"target": "http://c:1", "percent": 10, "version": "2"}')
    assert watcher.poll() and not watcher.poll()
    _swap(root, 2, '{"target": "http://c:1", "percent": 10, "version": "2"}')  # same text, new file
    assert watcher.poll()
    _swap(root, 3, '{"target": "http://c:1", "percent": 50')
    assert watcher.poll() and not watcher.poll()
    _swap(root, 4, None)  # the key removed from the ConfigMap
    assert watcher.poll()
    assert counted == [MirrorConfigOutcome.MISSING, MirrorConfigOutcome.ON, MirrorConfigOutcome.ON,
                       MirrorConfigOutcome.INVALID, MirrorConfigOutcome.MISSING]
    assert [c.percent for c in applied] == [0, 10, 10, 0, 0]
    assert len(caplog.records) == 5
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "INFO", "WARNING", "WARNING"]


def test_an_in_place_rewrite_is_seen_too(tmp_path: Path) -> None:
    path = tmp_path / "mirror.yaml"
    path.write_text("percent: 0\n")
    applied: list[MirrorConfig] = []
    watcher = MirrorConfigWatcher(str(path), applied.append, lambda outcome: None)
    watcher.poll()
    path.write_text("target: http://c\npercent: 20\nversion: '3'\n")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000))
    assert watcher.poll() and applied[-1] == MirrorConfig("http://c", 20.0, "3")


def test_mirror_settings_are_read_and_checked() -> None:
    s = read_settings([], env={"MODELSERVER_MIRROR_CONFIG": "/etc/mirror/mirror.json",
                               "MODELSERVER_MIRROR_QUEUE_SIZE": "7", "MODELSERVER_MIRROR_WORKERS": "2",
                               "MODELSERVER_MIRROR_TIMEOUT_S": "0.5"})
    assert (s.mirror_config_file, s.mirror_queue_size, s.mirror_workers, s.mirror_timeout_s) == (
        "/etc/mirror/mirror.json", 7, 2, 0.5)
    for bad in ({"MODELSERVER_MIRROR_WORKERS": "0"}, {"MODELSERVER_MIRROR_TIMEOUT_S": "0"},
                {"MODELSERVER_MIRROR_QUEUE_SIZE": "-1"}):
        with pytest.raises(SystemExit):
            read_settings([], env=bad)


def _mirror(percent: float, seed: int, **settings: int) -> Mirror:
    mirror = Mirror(Settings(**settings), ServerMetrics("m", "1"), rng=random.Random(seed))
    mirror.apply(MirrorConfig("http://c", percent, "2"))
    return mirror


def test_sampling_is_the_configured_share_and_repeatable_with_a_seed() -> None:
    def sampled(mirror: Mirror) -> list[bool]:
        return [mirror.wants_copy() is not None for _ in range(10_000)]

    ten = sampled(_mirror(10, seed=1))
    assert 900 <= sum(ten) <= 1100  # Binomial(10000, 0.1): standard deviation 30
    assert ten == sampled(_mirror(10, seed=1)) and ten != sampled(_mirror(10, seed=2))
    assert all(sampled(_mirror(100, seed=3))) and not any(sampled(_mirror(0, seed=3)))


def test_a_full_queue_drops_and_counts_and_close_counts_what_was_never_sent() -> None:
    def outcomes(mirror: Mirror) -> Outcomes:
        m = parse_pod_metrics(mirror.metrics.render().decode()).model("m", "1")
        assert m is not None
        return m.mirror_sent, m.mirror_failed, m.mirror_dropped, m.mirror_pending

    async def scenario(listener: socket.socket) -> list[Outcomes]:
        mirror = _mirror(100, seed=0, mirror_queue_size=3, mirror_workers=1, mirror_timeout_s=0.5)
        copy = Copy(f"http://127.0.0.1:{listener.getsockname()[1]}/v2/models/m/infer", b"{}", {})
        mirror.offer(copy)  # not started: nowhere to send, dropped
        await mirror.start()
        mirror.offer(copy)
        connection, _ = listener.accept()  # the sender took the copy; it gets no answer
        with connection:
            for _ in range(5):
                mirror.offer(copy)
            seen = [outcomes(mirror)]  # one being sent and two queued: the queue of 3 is full, three dropped
            await mirror.close()  # the sender process is stopped: the three never answered count as dropped
        return [*seen, outcomes(mirror)]

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(10)
        assert asyncio.run(scenario(listener)) == [(0, 0, 4, 3), (0, 0, 7, 0)]


def test_the_gauge_shows_the_configuration_in_force_as_one_series() -> None:
    metrics = ServerMetrics("m", "1")
    mirror = Mirror(Settings(), metrics)
    mirror.apply(MirrorConfig("http://c", 25, "2"))
    mirror.apply(MirrorConfig("http://c", 40, "3"))
    text = metrics.render().decode()
    assert text.count("modelserver_mirror_percent{") == 1
    m = parse_pod_metrics(text).model("m", "1")
    assert m is not None and (m.mirror_percent, m.mirror_target_version) == (40, "3")
    mirror.apply(OFF)
    m = parse_pod_metrics(metrics.render().decode()).model("m", "1")
    assert m is not None and (m.mirror_percent, m.mirror_target_version) == (0, "")
    metrics.count_mirror(MirrorOutcome.SENT)
    m = parse_pod_metrics(metrics.render().decode()).model("m", "1")
    assert m is not None and (m.mirror_sent, m.mirror_failed, m.mirror_dropped) == (1, 0, 0)


def test_the_module_examples_hold() -> None:
    for module in (mirror_config, mirror_module, shadow):
        assert doctest.testmod(module).failed == 0


def _primary(*predicted: str | float, classifier: bool = True) -> VerifiedToken:
    return VerifiedToken("m", "1", predicted, classifier, 0.0, "id", b"mac")


@pytest.mark.parametrize(("primary", "candidate", "classes", "expected"), [
    (_primary("a", "b", "a"), ("a", "a", "b"), frozenset("ab"), [("a", "a"), ("b", "a"), ("a", "b")]),
    (_primary("a"), ("a",), None, ShadowRefusal.NOT_CLASSIFIER),  # this model is a regressor
    (_primary(1.5, classifier=False), ("a",), frozenset("ab"), ShadowRefusal.NOT_CLASSIFIER),
    (_primary("a", "b"), ("a",), frozenset("ab"), ShadowRefusal.ROW_MISMATCH),
    (_primary("a", "zzz"), ("a", "b"), frozenset("ab"), ShadowRefusal.UNKNOWN_CLASS),
])
def test_pairs_come_only_from_the_model_s_own_classes(primary: VerifiedToken, candidate: tuple[str, ...],
                                                      classes: frozenset[str] | None,
                                                      expected: object) -> None:
    assert pairs_of(primary, candidate, classes) == expected
