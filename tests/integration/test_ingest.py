"""The ingest path (issue 12, section 4): what one batch costs the database, which batches
are valid (one rule for the JSON and the packed body), and what the SDK logs comes back
bit-exact, through its spool, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event

from safeboard import wire
from safeboard.auth.permissions import Role, Scope
from safeboard.ids import new_id
from safeboard.metrics.batches import MAX_KEYS, MAX_STEP
from safeboard.settings import Settings
from safeboard.vocabulary import metric_key_problem
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("olga")
    built.user("eve", Role.MEMBER)
    yield built
    await built.close()


async def _run(world: World) -> tuple[httpx.AsyncClient, str]:
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.WRITE)}")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = await olga.post("/api/v1/projects/mnist/runs", json={"name": "base"})
    assert run.status_code == 201, run.text
    return olga, run.json()["id"]


@contextmanager
def checkouts(world: World) -> Iterator[list[object]]:
    """Every connection the app's engine hands out meanwhile (a pool checkout)."""
    engine = world.services.engine
    seen: list[object] = []

    def on_checkout(dbapi_connection: object, *_: Any) -> None:
        seen.append(dbapi_connection)

    sa_event.listen(engine, "checkout", on_checkout)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "checkout", on_checkout)


def _packed(batch_id: str, n: int = 3) -> bytes:
    steps = list(range(n))
    column = {"steps": steps, "times": [1.7e9 + s for s in steps], "values": [0.5] * n}
    return wire.pack(batch_id, {"loss": column})


async def test_a_repeated_batch_costs_one_connection_its_write(world: World) -> None:
    """One connection a batch, the write's, whether new, a retry, or refused: a key used
    again within a second is remembered, and the run's access is checked on the write's
    connection (then remembered for a second). Before issue 13: two, the key's look-up and
    the write's."""
    world.context.keys.monotonic = lambda: 0.0  # nothing remembered expires meanwhile
    world.services.metrics.monotonic = lambda: 0.0
    # The roller's pass half a second after a batch reads on a connection of its own: on a
    # busy machine it fell inside the window counted below (seen in CI: 2, not 1).
    world.services.metrics.rollups.stop()
    olga, run_id = await _run(world)
    url = f"/api/v1/runs/{run_id}/metrics"
    headers = {"Content-Type": wire.MEDIA_TYPE}
    batch_id = new_id()
    counts = []
    for _ in range(3):  # stored, then acknowledged twice as a duplicate
        with checkouts(world) as seen:
            response = await olga.post(url, content=_packed(batch_id), headers=headers)
        assert response.status_code == 200, response.text
        counts.append(len(seen))
    assert counts == [1, 1, 1]
    eve = world.client(Authorization=f"Bearer {world.key('eve', Scope.WRITE)}")
    assert (await eve.get("/api/v1/projects")).status_code == 200  # the key's first use noted
    with checkouts(world) as seen:
        response = await eve.post(url, content=_packed(new_id()), headers=headers)
    assert response.status_code == 404
    assert len(seen) == 1


async def test_a_batch_whose_live_update_is_too_long_for_notify_is_stored(world: World) -> None:
    """The live update goes in the write's transaction on PostgreSQL: one longer than NOTIFY
    takes (8,000 bytes) is left out, and the batch is stored all the same."""
    olga, run_id = await _run(world)
    one = {"steps": [1], "times": [1.7e9], "values": [0.5]}
    metrics = {f"{i:03d}" + "k" * 200: one for i in range(60)}
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=wire.pack(new_id(), metrics),
        headers={"Content-Type": wire.MEDIA_TYPE},
    )
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 60


# A batch as lists per key: [key, steps, times, values] (a list, so a key may repeat).
Column = list[Any]
_keys = st.text(min_size=1, max_size=12).filter(lambda k: metric_key_problem(k) is None)


@st.composite
def _columns(draw: st.DrawFn) -> list[Column]:
    keys = draw(st.lists(_keys, min_size=1, max_size=4, unique=True))
    out = []
    for key in keys:
        n = draw(st.integers(1, 12))
        steps = draw(st.lists(st.integers(0, MAX_STEP), min_size=n, max_size=n))
        times = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n,
                              max_size=n))  # fmt: skip
        values = draw(st.lists(st.floats(), min_size=n, max_size=n))
        out.append([key, steps, times, values])
    return out


FLAWS = ["none", "batch_id", "key", "no keys", "too many keys", "empty", "lengths",
         "negative step", "huge step", "time", "duplicate key"]  # fmt: skip


def _flawed(
    flaw: str, columns: list[Column], draw: Callable[[Any], Any], *, packed: bool
) -> tuple[str, str]:
    """Give ``columns`` the flaw; the batch id to send and the field the refusal names."""
    first = columns[0]
    key = first[0]
    batch_id, field = new_id(), "metrics"
    if flaw == "batch_id":
        batch_id = draw(st.sampled_from(["short", "x" * 65, "has space", "", "é" * 10]))
        field = "batch_id"
    elif flaw == "key":
        bad = draw(st.sampled_from(["", "a\n", "..", "a/./b", "x" * 251, "\x7f"]))
        columns.append([bad, [1], [1.0], [1.0]])
    elif flaw == "no keys":
        columns.clear()
    elif flaw == "too many keys":
        columns[:] = [[f"k{i}", [1], [1.0], [1.0]] for i in range(MAX_KEYS + 1)]
    elif flaw == "duplicate key":
        columns.append(list(first))
    elif flaw == "empty":
        first[1:] = [[], [], []]
        field = f"metrics.{key}: at least one point"
    elif flaw == "lengths":
        first[2] = [*first[2], 1.0]
        # The packed layout cannot say it: its columns overrun what the header counts.
        field = "body:" if packed else f"metrics.{key}: steps, times and values"
    elif flaw == "negative step":
        first[1][0] = draw(st.integers(-(2**63), -1))
        field = f"metrics.{key}.steps"
    elif flaw == "huge step":
        # Past int64 too in JSON (the packed layout holds int64 only).
        first[1][-1] = draw(st.integers(MAX_STEP + 1, 2**63 - 1 if packed else 2**80))
        field = f"metrics.{key}.steps"
    elif flaw == "time":
        first[2][0] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        field = f"metrics.{key}.times"
    return batch_id, field


def _json_body(batch_id: str, columns: list[Column]) -> bytes:
    metrics = {k: {"steps": s, "times": t, "values": v} for k, s, t, v in columns}
    return json.dumps({"batch_id": batch_id, "metrics": metrics}).encode()  # NaN as NaN


def _packed_body(batch_id: str, columns: list[Column]) -> bytes:
    """Packed by hand (``wire.pack`` cannot repeat a key or send unequal columns)."""
    header = json.dumps({"batch_id": batch_id, "metrics": [[c[0], len(c[1])] for c in columns]})
    head = header.encode() + b" " * (-(8 + len(header.encode())) % 8)
    parts = [struct.pack("<4sI", wire.MAGIC, len(head)), head]
    for _, steps, times, values in columns:
        parts += [struct.pack(f"<{len(steps)}q", *steps), struct.pack(f"<{len(times)}d", *times),
                  struct.pack(f"<{len(values)}d", *values)]  # fmt: skip
    return b"".join(parts)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(columns=_columns(), flaw=st.sampled_from(FLAWS), packed=st.booleans(), data=st.data())
async def test_any_batch_is_stored_or_refused_naming_its_field(
    world: World, columns: list[Column], flaw: str, packed: bool, data: st.DataObject
) -> None:
    """Property: valid batches (any floats, steps 0 to 2**62, finite times) are stored
    whole; each kind of flaw is refused with 422 and a message that names the field, with
    the same words for the JSON and the packed body; never a 5xx."""
    if not hasattr(world, "ingest_run"):
        world.ingest_run = await _run(world)  # type: ignore[attr-defined]
    olga, run_id = world.ingest_run  # type: ignore[attr-defined]
    if flaw == "duplicate key" and not packed:
        flaw = "none"  # a JSON object cannot hold a key twice (the parser keeps the last)
    batch_id, field = _flawed(flaw, columns, data.draw, packed=packed)
    body = (_packed_body if packed else _json_body)(batch_id, columns)
    media_type = wire.MEDIA_TYPE if packed else "application/json"
    event(f"{flaw} ({'packed' if packed else 'json'})")
    response = await olga.post(
        f"/api/v1/runs/{run_id}/metrics", content=body, headers={"Content-Type": media_type}
    )
    if flaw == "none":
        assert response.status_code == 200, response.text
        assert response.json()["stored"] == sum(len(c[1]) for c in columns)
        return
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(field), (flaw, message)
