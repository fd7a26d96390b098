"""The e2e traffic client's failure count: a gateway's own error page (not JSON) is a failure once,
whatever its status, and a 5xx that is not JSON is not counted twice."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from localcluster.modeltraffic import ModelTraffic

pytestmark = pytest.mark.unit

ANSWERS = [(200, "<html>gateway page</html>"), (502, "Bad Gateway"), (404, "no route"),
           (200, '{"model_version": "1", "outputs": [{"data": [1]}]}')]


def test_answers_that_are_not_json_count_once_as_failures() -> None:
    async def scenario() -> ModelTraffic:
        answers = iter(ANSWERS)

        async def infer(_request: web.Request) -> web.Response:
            status, body = next(answers)
            return web.Response(status=status, text=body)

        app = web.Application()
        app.router.add_post("/v2/models/m/infer", infer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        traffic = ModelTraffic(f"http://127.0.0.1:{port}", "m", [[0.0]], [1], rate=1)
        try:
            async with aiohttp.ClientSession() as session:
                for _ in ANSWERS:
                    await traffic._infer(session, 0)
        finally:
            await runner.cleanup()
        return traffic

    stats = asyncio.run(scenario()).stats
    assert stats.failures == 3, stats.explain()  # the 200 page, the 502 and the 404; not the JSON answer
    assert sum(stats.not_json.values()) == 3 and stats.statuses[502] == 1
