"""The access log of the in-process app holds no secret however it is encoded (S15, issue 10
item 11): keys and tokens percent-encoded, double-encoded or with ``+`` in the path and the
query string are replaced, and what holds no secret is logged as it was sent."""

from __future__ import annotations

import logging
from urllib.parse import unquote, unquote_plus

import httpx
import pytest

pytestmark = pytest.mark.anyio

SECRET = "Sup3rS3cretT0kenValue"


def _decodings(text: str) -> str:
    readings = [text]
    for decode in (unquote, unquote_plus):
        current = text
        for _ in range(10):
            current = decode(current)
            readings.append(current)
    return "\n".join(readings)


async def test_encoded_secrets_never_reach_the_access_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    targets = [
        f"/api/v1/keys/sb%5Fabc123%5F{SECRET}",
        f"/api/v1/keys/%73%62_abc123_{SECRET}",
        f"/api/v1/keys/%2573b_abc123_{SECRET}",
        f"/healthz?q=sb%5Fabc123%5F{SECRET}&page=1",
        f"/healthz?%2574oken={SECRET}&page=1",
        f"/healthz?q=Bearer+{SECRET}&page=1",
        f"/healthz?q=a%26token%3D{SECRET}&page=1",
        f"/files/%70review/{SECRET}",
    ]
    with caplog.at_level(logging.INFO, logger="safeboard.access"):
        for target in targets:
            await client.get(target)
        await client.get("/healthz?sort=-loss%2Cacc&page=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "safeboard.access"]
    assert len(lines) == len(targets) + 1  # every request was logged...
    assert SECRET not in _decodings("\n".join(lines))  # ...and no encoding of the secret
    assert "GET /healthz?sort=-loss%2Cacc&page=1" in lines[-1]  # the rest as sent
