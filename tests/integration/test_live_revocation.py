"""Open event streams end within a second of their credential or grant ending, also when
the change is made through another replica; and an account holds a bounded number of
them (S8, S9; runs/streams.py). On SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable

import pytest

from safeboard.auth.permissions import Role
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.sse import OpenStream
from tests.support.sessions import BINDING_HEADER, session_cookie_name

pytestmark = pytest.mark.anyio

STREAM = "/api/v1/projects/mnist/events"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _two_replicas(
    make_settings: Callable[..., Settings], db_url: str, **overrides: object
) -> tuple[World, World, str]:
    """Replicas A and B of one database; admin and alice; project mnist, alice a viewer.
    Returns the admin's key."""
    a = build_world(make_settings, db_url, **overrides)
    b = build_world(make_settings, db_url, **overrides)
    a.user("admin", Role.ADMIN)
    a.user("alice")
    admin = a.key("admin")
    made = await a.client().post("/api/v1/projects", json={"name": "mnist"}, headers=_bearer(admin))
    assert made.status_code == 201, made.text
    granted = await a.client().put(
        "/api/v1/projects/mnist/grants/alice", json={"role": "viewer"}, headers=_bearer(admin)
    )
    assert granted.status_code == 204, granted.text
    return a, b, admin


@pytest.fixture
async def replicas(
    make_settings: Callable[..., Settings], db_url: str
) -> AsyncIterator[tuple[World, World, str]]:
    a, b, admin = await _two_replicas(make_settings, db_url)
    yield a, b, admin
    await a.close()
    await b.close()


async def _revoke(
    cause: str, via: World, admin: str, alice_key: str, session: dict[str, str]
) -> None:
    """``session``: the Cookie and binding headers of alice's browser session."""
    client = via.client()
    if cause == "key revoked":
        key_id = alice_key.split("_")[1]
        done = await client.delete(f"/api/v1/keys/{key_id}", headers=_bearer(admin))
    elif cause == "session signed out":
        cookie = session["Cookie"].partition("=")[2]
        csrf = via.context.auth.csrf_token(cookie)
        done = await client.post("/api/v1/auth/logout", headers={**session, **via.unsafe(csrf)})
    elif cause == "grant removed":
        done = await client.delete("/api/v1/projects/mnist/grants/alice", headers=_bearer(admin))
    else:
        assert cause == "account disabled"
        done = await client.patch(
            "/api/v1/users/alice", json={"active": False}, headers=_bearer(admin)
        )
    assert done.status_code in (200, 204), done.text


@pytest.mark.parametrize("through", ["same replica", "other replica"])
@pytest.mark.parametrize(
    ("cause", "code"),
    [
        ("key revoked", "unauthenticated"),
        ("session signed out", "unauthenticated"),
        ("grant removed", "not_found"),
        ("account disabled", "unauthenticated"),
    ],
)
async def test_a_stream_ends_within_a_second(
    replicas: tuple[World, World, str], cause: str, code: str, through: str
) -> None:
    a, b, admin = replicas
    alice_key = a.key("alice")
    browser, _ = await a.signed_in("alice")
    name = session_cookie_name(a.base_url)
    session = {"Cookie": f"{name}={browser.cookies[name]}"}
    session[BINDING_HEADER] = browser.headers[BINDING_HEADER]
    credential = session if "session" in cause else _bearer(alice_key)
    alice = await OpenStream(a.app, a.base_url, STREAM, credential).open()
    bystander = await OpenStream(a.app, a.base_url, STREAM, _bearer(admin)).open()
    assert alice.status == 200
    assert bystander.status == 200

    asked = time.monotonic()
    await _revoke(cause, b if through == "other replica" else a, admin, alice_key, session)
    done = time.monotonic()  # the change has committed
    assert await alice.ended_within(1.0), f"the stream outlived '{cause}' by over 1 s"
    assert alice.ended_at is not None
    took = f"request {done - asked:.3f} s, then the stream ended {alice.ended_at - done:.3f} s"
    assert alice.ended_at - done < 1.0, took
    kind, data = alice.events()[-1]
    assert (kind, data["error"]["code"]) == ("end", code)
    assert "stream" in data["error"]["message"]
    assert bystander.ended_at is None  # the admin's stream stands
    await alice.close()
    await bystander.close()


async def test_a_standing_stream_stays_open(replicas: tuple[World, World, str]) -> None:
    a, _, _admin = replicas
    stream = await OpenStream(a.app, a.base_url, STREAM, _bearer(a.key("alice"))).open()
    assert not await stream.ended_within(2.0)  # several re-checks, no false end
    assert stream.events() == []
    await stream.close()


async def test_streams_per_account_are_capped(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    a, b, admin = await _two_replicas(make_settings, db_url, server={"event_streams_per_user": 2})
    try:
        # Two keys of one account: the cap counts the account, not the credential.
        first = await OpenStream(a.app, a.base_url, STREAM, _bearer(a.key("alice"))).open()
        second_key = a.key("alice")
        second = await OpenStream(a.app, a.base_url, STREAM, _bearer(second_key)).open()
        assert first.status == second.status == 200
        third = await OpenStream(a.app, a.base_url, STREAM, _bearer(second_key)).open()
        assert third.status == 429
        error = third.json()["error"]
        assert error["code"] == "too_many_streams"
        assert "server.event_streams_per_user" in error["message"]
        run = await a.client().post(
            "/api/v1/projects/mnist/runs", json={"name": "r"}, headers=_bearer(admin)
        )
        per_run = f"/api/v1/runs/{run.json()['id']}/events"
        refused = await OpenStream(a.app, a.base_url, per_run, _bearer(second_key)).open()
        assert refused.status == 429  # both kinds of stream count
        others = await OpenStream(a.app, a.base_url, STREAM, _bearer(admin)).open()
        assert others.status == 200  # another account is not affected
        elsewhere = await OpenStream(b.app, b.base_url, STREAM, _bearer(second_key)).open()
        assert elsewhere.status == 200  # per replica (documented)
        await first.close()  # a closed stream gives its place back
        again = await OpenStream(a.app, a.base_url, STREAM, _bearer(second_key)).open()
        assert again.status == 200
        # ...and so does one the server ended.
        await _revoke("key revoked", a, admin, second_key, "")
        assert await second.ended_within(1.0)
        assert await again.ended_within(1.0)
        await second.close()
        await again.close()
        assert a.services.streams.open_count() == 1  # the admin's
        fresh = await OpenStream(a.app, a.base_url, STREAM, _bearer(a.key("alice"))).open()
        assert fresh.status == 200
        for stream in (fresh, others, elsewhere):
            await stream.close()
    finally:
        await a.close()
        await b.close()


async def test_a_stream_whose_client_left_before_it_began_gives_its_place_back(
    replicas: tuple[World, World, str],
) -> None:
    """Gone before the response began: the stream's body may never run (nor its
    ``finally``); its place is given back all the same."""
    a, _, admin = replicas
    gone = OpenStream(a.app, a.base_url, STREAM, _bearer(admin), hang_up_at_once=True)
    await gone.open()
    await gone.close()
    del gone
    gc.collect()
    assert a.services.streams.open_count() == 0


async def test_nothing_follows_the_end_even_when_a_full_queue_dropped_it(
    replicas: tuple[World, World, str],
) -> None:
    """Review finding: the END event waited behind up to 999 queued events, and a stream
    that stopped reading while 1,000 more arrived lost it and ran on after revocation."""
    from safeboard.events import Event
    from safeboard.runs.standing import Refusal

    a, _, _admin = replicas
    stream = await OpenStream(a.app, a.base_url, STREAM, _bearer(a.key("alice"))).open()
    (ticket,) = a.services.streams._open
    ticket.end(Refusal("unauthenticated", "this stream's API key was revoked"))
    subscription = ticket._subscription
    for step in range(1100):  # before the stream runs again: the END is pushed out
        subscription.offer(Event("run", ticket.project_id, "r" * 32, {"step": step}))
    assert await stream.ended_within(1.0), "the stream ran on after its END was dropped"
    assert [kind for kind, _ in stream.events()] == ["end"]
    await stream.close()
