"""Metric batches posted as packed columns (``safeboard.wire``).

A compact body (``SBC2``: steps of one stride and float32-exact values in 12 bytes a point
where the plain body takes 24) goes to the server as itself; a server from before compact
bodies answers 415, and then gets the same batch as a plain body (``SBC1``), as does every
later batch of the same ``ApiClient``: one refused request per client (one per thread that
had a compact body in flight before the first answer came), nothing lost (a batch is
stored once by its id, whichever body carries it).

``safeboard.wire`` (numpy) is imported here only when a compact body is posted: whoever
made one has it loaded already; the client itself does not need numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeboard.errors import UnsupportedMediaType

if TYPE_CHECKING:
    from safeboard.client.typed import Client

__all__ = ["COMPACT_MAGIC", "post"]

COMPACT_MAGIC = b"SBC2"  # safeboard.wire.COMPACT_MAGIC, without importing numpy


def post(client: Client, path: str, body: bytes, media_type: str | None) -> Any:
    """POST ``body`` to ``path`` (retried: it carries its batch id); the answer's JSON."""
    if body[:4] == COMPACT_MAGIC:
        from safeboard import wire  # noqa: PLC0415  (see the module's docstring)

        if not client.api.plain_columns:
            try:
                return _post(client, path, body, wire.COMPACT_MEDIA_TYPE)
            except UnsupportedMediaType:
                client.api.plain_columns = True  # a server from before compact bodies
        body, media_type = wire.plain(body), wire.MEDIA_TYPE
    return _post(client, path, body, media_type or "application/octet-stream")


def _post(client: Client, path: str, body: bytes, media_type: str) -> Any:
    headers = {"Content-Type": media_type}
    return client.send("POST", path, content=body, headers=headers, idempotent=True).json()
