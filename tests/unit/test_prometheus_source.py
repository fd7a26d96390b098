"""The prometheus source against a local HTTP(S) server speaking Prometheus's query API: windows that meet
tick to tick, the bearer token and CA it was given, and failures (HTTP errors, timeouts, empty answers,
an unverifiable certificate, an unreadable Secret) that come back as missing data, so Inconclusive.

A real Prometheus answers the same queries in tests/e2e/test_prometheus_source.py; this server exists to
produce the failures on demand."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelrollout.analysis.config import AnalysisConfig
from modelrollout.analysis.engine import assess_tick
from modelrollout.analysis.state import AnalysisState
from modelrollout.analysis.types import Tick, Verdict
from modelrollout.kube import PodTarget
from modelrollout.sources import PrometheusAccess, ScrapeRequest
from modelrollout.sources.prometheus import PrometheusSource

pytestmark = pytest.mark.unit
PODS = [PodTarget("c-0", "u1", "10.0.0.1", "2", None), PodTarget("s-0", "u2", "10.0.0.2", "1", None),
        PodTarget("s-1", "u3", "10.0.0.3", "1", None)]


@dataclass
class FakePrometheus:
    """Answers /api/v1/query by `mode`; the version's requests are 100 x its number, 5xx are 2 x."""

    mode: str = "ok"
    seen: list[dict[str, str]] = field(default_factory=list)

    async def query(self, request: web.Request) -> web.Response:
        self.seen.append({**request.query, "auth": request.headers.get("Authorization", "")})
        if self.mode == "500":
            return web.json_response({"status": "error", "error": "storage is on fire"}, status=500)
        if self.mode == "hang":
            await asyncio.sleep(2)
        if self.mode == "empty":
            return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})
        version = int(request.query["query"].split('version="')[1].split('"')[0])
        result = [{"metric": {"code": "200"}, "value": [0, str(100 * version)]},
                  {"metric": {"code": "500"}, "value": [0, str(2 * version)]}]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})


@asynccontextmanager
async def serving(fake: FakePrometheus, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/api/v1/query", fake.query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def request(address: str, timeout: str = "1s", **access: Any) -> ScrapeRequest:
    settings: dict[str, Any] = {"address": address, "timeout": timeout}
    if access.pop("skip_verify", False):
        settings["tls"] = {"insecureSkipVerify": True}
    config = AnalysisConfig.from_spec({"metrics": [{"name": "errors", "type": "errorRate", "max": 0.05}],
                                       "source": "prometheus", "prometheus": settings})
    assert config.prometheus is not None
    return ScrapeRequest(key="ml/fraud", model="fraud", canary_version="2", stable_version="1", port=8080,
                         pods=PODS, namespace="ml", analysis=config,
                         prometheus=PrometheusAccess(config.prometheus, **access))


async def two_looks(source: PrometheusSource, req: ScrapeRequest) -> Tick:
    assert await source.observe(req) is None  # the first look starts the first window
    await asyncio.sleep(0.05)
    tick = await source.observe(req)
    assert tick is not None
    return tick


def window_ms(query: str) -> int:
    return int(query.rsplit("[", 1)[1].split("ms]", 1)[0])


def test_counts_of_both_versions_over_windows_that_meet() -> None:
    async def run() -> tuple[Tick, Tick, list[dict[str, str]]]:
        fake = FakePrometheus()
        async with serving(fake) as address:
            source = PrometheusSource()
            req = request(address, bearer_token="s3cret")
            first = await two_looks(source, req)
            await asyncio.sleep(0.1)
            second = await source.observe(req)
            assert second is not None
            return first, second, fake.seen

    first, second, seen = asyncio.run(run())
    assert first.canary is not None and first.stable is not None
    assert (first.canary.requests, first.canary.errors) == (204.0, 4.0)
    assert (first.stable.requests, first.stable.errors) == (102.0, 2.0)
    assert first.expected_canary_share == pytest.approx(1 / 3) and first.errors == ()
    assert all(s["auth"] == "Bearer s3cret" for s in seen)
    assert all('namespace="ml",model="fraud"' in s["query"] for s in seen)
    # The second window starts where the first ended: its length is the time between the two looks.
    t1, t2 = float(seen[0]["time"]), float(seen[-1]["time"])
    assert window_ms(seen[-1]["query"]) == pytest.approx((t2 - t1) * 1000, abs=2)
    assert second.duration_seconds == pytest.approx(t2 - t1, abs=0.002)


@pytest.mark.parametrize(("mode", "complaint"), [
    ("500", "requests query: RuntimeError: HTTP 500: storage is on fire"),
    ("hang", "requests query: timed out after 0.3s"),
    ("empty", "requests query: ValueError: empty result: no series matched"),
])
def test_a_failed_query_is_missing_data_and_the_analysis_says_inconclusive(mode: str, complaint: str) -> None:
    async def run() -> tuple[Tick, Tick, list[dict[str, str]]]:
        fake = FakePrometheus(mode=mode)
        async with serving(fake) as address:
            source = PrometheusSource()
            req = request(address, timeout="300ms")
            failed = await two_looks(source, req)
            fake.mode = "ok"
            await asyncio.sleep(0.1)
            recovered = await source.observe(req)
            assert recovered is not None
            return failed, recovered, fake.seen

    failed, recovered, seen = asyncio.run(run())
    assert failed.canary is None and failed.stable is None  # neither version counted, so neither twice
    assert any(complaint in e for e in failed.errors), failed.errors
    config = request("http://unused").analysis
    assert config is not None
    outcome, _ = assess_tick(config, AnalysisState.initial(config), failed)
    assert outcome.overall is Verdict.INCONCLUSIVE and complaint in outcome.results[0].message
    # The next successful look covers the failed window too: nothing between the looks is lost.
    assert recovered.canary is not None and recovered.stable is not None
    assert failed.duration_seconds is not None and recovered.duration_seconds is not None
    assert recovered.duration_seconds >= failed.duration_seconds + 0.1
    assert window_ms(seen[-1]["query"]) == pytest.approx(recovered.duration_seconds * 1000, abs=1)


def _certificate(tmp: Path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test prometheus")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (tmp / "cert.pem").write_text(pem)
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return context, pem


def test_tls_verifies_against_the_given_ca_or_is_skipped_only_when_asked(tmp_path: Path) -> None:
    server_tls, ca_pem = _certificate(tmp_path)

    async def run() -> dict[str, Tick]:
        async with serving(FakePrometheus(), server_tls) as address:
            return {"ca": await two_looks(PrometheusSource(), request(address, ca_pem=ca_pem)),
                    "no ca": await two_looks(PrometheusSource(), request(address)),
                    "skip": await two_looks(PrometheusSource(), request(address, skip_verify=True))}

    ticks = asyncio.run(run())
    assert ticks["ca"].canary is not None and ticks["skip"].canary is not None
    assert ticks["no ca"].canary is None and "CERTIFICATE_VERIFY_FAILED" in " ".join(ticks["no ca"].errors)


def test_an_unreadable_secret_is_reported_as_missing_data_without_a_query() -> None:
    async def run() -> tuple[Tick, int]:
        fake = FakePrometheus()
        async with serving(fake) as address:
            tick = await two_looks(PrometheusSource(), request(
                address, problem="cannot read a Secret of spec.analysis.prometheus (HTTP 404: Not Found)"))
            return tick, len(fake.seen)

    tick, queries = asyncio.run(run())
    assert tick.canary is None and queries == 0
    assert tick.errors == ("cannot read a Secret of spec.analysis.prometheus (HTTP 404: Not Found)",)
