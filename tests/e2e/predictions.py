"""Predictions sent the way feedback tests need them: one request per connection."""

from __future__ import annotations

from typing import Any

import aiohttp


async def predict_on_fresh_connections(url: str, model: str, rows: list[list[float]],
                                       count: int) -> list[tuple[str, dict[str, Any]]]:
    """(X-Model-Version, answer) of `count` one-row V2 requests, each on its own connection (force_close), so
    the Service spreads them over every pod of both versions."""
    answered = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        for i in range(count):
            row = rows[i % len(rows)]
            body = {"inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
            async with session.post(f"{url}/v2/models/{model}/infer", json=body) as resp:
                assert resp.status == 200, await resp.text()
                answered.append((resp.headers["X-Model-Version"], await resp.json()))
    return answered
