"""Opaque cursors for keyset pagination over (created_at, id): a list's ``next_cursor``
names the last row a page held, and the next page starts after it."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from safeboard.errors import BadRequest
from safeboard.ids import is_id

__all__ = ["decode_position", "encode_position"]


def encode_position(created_at: datetime, row_id: str) -> str:
    # In UTC: Python 3.11 reads an offset with microseconds back without them.
    moment = created_at.astimezone(UTC) if created_at.tzinfo is not None else created_at
    raw = json.dumps([moment.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names; 400 for anything this server did not make (only a
    timestamp with its zone and a row id of 32 hex digits reach the database)."""
    refused = BadRequest("cursor: not one this server made")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        well_formed = moment.tzinfo is not None and is_id(row_id)
        if well_formed:
            moment = moment.astimezone(UTC)  # OverflowError at the calendar's ends
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise refused from exc
    if not well_formed:
        raise refused
    return moment, row_id
