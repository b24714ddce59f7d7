"""Cursors (safeboard/cursors.py): a position round-trips; anything else, however it is
built, is a 400 (BadRequest) and nothing else."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st

from safeboard.cursors import decode_position, encode_position
from safeboard.errors import BadRequest

ids = st.text("0123456789abcdef", min_size=32, max_size=32)
zones = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone)


@given(st.datetimes(timezones=zones), ids)
@example(  # an offset with microseconds: Python 3.11 reads it back without them
    datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(microseconds=1))), "0" * 32
)
def test_a_position_round_trips_in_utc(moment: datetime, row_id: str) -> None:
    try:
        expected = moment.astimezone(UTC)
    except OverflowError:  # a zone that pushes it past year 1 or 9999: not one we make
        return
    assert decode_position(encode_position(moment, row_id)) == (expected, row_id)


def _forged(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@given(st.one_of(
    st.text(max_size=200),
    json_values.map(_forged),
    st.tuples(st.datetimes(timezones=st.none() | zones).map(datetime.isoformat),
              st.text(max_size=40) | ids).map(list).map(_forged),
))  # fmt: skip
@example(_forged(["0001-01-01T00:00:00+01:00", "ab" * 16]))  # past year 1 in UTC
@example(_forged(["9999-12-31T23:59:59-01:00", "ab" * 16]))  # past year 9999 in UTC
@example(_forged(["2024-01-01T00:00:00+00:00", "\ud800"]))
def test_anything_else_is_a_bad_request(cursor: str) -> None:
    try:
        moment, row_id = decode_position(cursor)
    except BadRequest:
        return
    assert moment.tzinfo is UTC
    assert len(row_id) == 32
