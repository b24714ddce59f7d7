"""Tasks' secrets through the real app, on SQLite and PostgreSQL (docs/agents.md,
"Secrets"): sealed at rest (no table holds a value, nor its base64, nor its hex); every
answer to a user names them only (submit, show, list, cancel, retry), the audit log too;
the dashboard's run page and the run's JSON never carry them; the agent's lease answer is
the one place they are in clear; a retry carries them over; bad input is 422 and stores
nothing; a rotation keeps them readable; a replaced key fails the task with a reason
(never a 5xx)."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from safeboard.agents.credentials import parse_agent_credential
from safeboard.auth.permissions import Role
from safeboard.cli.local import Local
from safeboard.jobs.spec import MAX_SECRET_BYTES, MAX_SECRETS, MAX_SECRETS_BYTES
from safeboard.secret_store import _read, _write, rotate_secrets
from safeboard.server.bootstrap import bootstrap
from safeboard.settings import SECRETS_FILE, Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

SUBMIT = "/api/v1/projects/p/tasks"
TOKEN = "tok-4f1e9a0c6b2d4e8f9a7b3c1d0e2f4a6b"
PASSWORD = "pw-Zq8Yk3Lm0Nx7Rb2Vt5Hs9Jd4Gf6Cw1Ep"
HTML = {"Accept": "text/html,application/xhtml+xml"}
# Each value within its bound, all of them together over theirs.
TOO_MUCH = {
    f"S{i}": "x" * MAX_SECRET_BYTES for i in range(MAX_SECRETS_BYTES // MAX_SECRET_BYTES + 1)
}


def open_world(make_settings: Callable[..., Settings], db_url: str, *, fresh: bool) -> World:
    built = build_world(make_settings, db_url)
    if fresh:
        built.user("admin", Role.ADMIN)
        built.services.projects.create(Local(built.services).principal("admin"), "p")
    return built


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = open_world(make_settings, db_url, fresh=True)
    yield built
    await built.close()


def admin(world: World) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key('admin')}")


def agent(world: World) -> httpx.AsyncClient:
    credential = world.agent()
    assert parse_agent_credential(credential) is not None
    return world.client(Authorization=f"Bearer {credential}")


async def submit(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    # JSON escapes, as a client may send: a lone surrogate travels as \ud800.
    text = json.dumps({"command": ["python", "train.py"], **body})
    return await client.post(SUBMIT, content=text, headers={"Content-Type": "application/json"})


def encodings(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"="),
            binascii.hexlify(raw)]  # fmt: skip


def cells(engine: sa.Engine) -> Iterable[tuple[str, str, bytes]]:
    """Every cell of every table of the database, as bytes."""
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    if value is None:
                        continue
                    data = bytes(value) if isinstance(value, bytes | memoryview) else str(value)
                    yield (
                        table.name,
                        column.name,
                        (data if isinstance(data, bytes) else data.encode()),
                    )


def assert_nowhere_in_database(engine: sa.Engine, *values: str) -> None:
    needles = [n for value in values for n in encodings(value)]
    found = [(t, c) for t, c, cell in cells(engine) if any(n in cell for n in needles)]
    assert found == [], f"a secret in clear in {found}"


def assert_absent(text: str, *values: str) -> None:
    for value in values:
        for needle in encodings(value):
            assert needle.decode() not in text


async def test_secrets_are_sealed_and_shown_by_name_only(world: World) -> None:
    client = admin(world)
    made = await submit(client, env={"LR": "0.1"}, secrets={"API_TOKEN": TOKEN,
                                                            "DB_PASSWORD": PASSWORD})  # fmt: skip
    assert made.status_code == 201, made.text
    task = made.json()
    assert task["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]
    answers = [made, await client.get(f"/api/v1/tasks/{task['id']}"),
               await client.get("/api/v1/tasks", params={"project": "p"}),
               await client.get(f"/api/v1/runs/{task['run_id']}")]  # fmt: skip
    assert answers[1].json()["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]
    assert answers[2].json()["tasks"][0]["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]
    assert all(r.status_code == 200 for r in answers[1:]), answers
    for text in (r.text for r in answers):
        assert_absent(text, TOKEN, PASSWORD)
    assert_nowhere_in_database(world.services.engine, TOKEN, PASSWORD)

    # The agent's lease answer: the one place they are in clear.
    runner = agent(world)
    leased = await runner.post("/api/v1/agent/lease", json={"free_gpus": []})
    assert leased.status_code == 200, leased.text
    assert leased.json()["secrets"] == {"API_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD}
    assert leased.json()["env"] == {"LR": "0.1"}
    base = f"/api/v1/agent/tasks/{task['id']}/1"
    for body in ({"kind": "running", "pid": 4242}, {"kind": "exited", "exit_code": 1}):
        assert (await runner.post(f"{base}/events", json=body)).status_code == 200

    # A retry carries them over, sealed anew under the new task's id.
    retried = await client.post(f"/api/v1/tasks/{task['id']}/retry")
    assert retried.status_code == 201, retried.text
    assert retried.json()["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]
    assert_absent(retried.text, TOKEN, PASSWORD)
    again = await runner.post("/api/v1/agent/lease", json={"free_gpus": []})
    assert again.json()["id"] == retried.json()["id"]
    assert again.json()["secrets"] == {"API_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD}
    cancelled = await client.post(f"/api/v1/tasks/{retried.json()['id']}/cancel")
    assert_absent(cancelled.text, TOKEN, PASSWORD)
    assert cancelled.json()["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]

    # The audit log names them; the database still holds no value in clear.
    with world.services.engine.connect() as conn:
        details = (
            conn.execute(sa.text("SELECT detail FROM audit_log WHERE action = 'task.submitted'"))
            .scalars()
            .all()
        )
    assert len(details) == 2
    assert all('"sealed_variables":["API_TOKEN","DB_PASSWORD"]' in d for d in details)
    assert_nowhere_in_database(world.services.engine, TOKEN, PASSWORD)

    # The dashboard's run page, rendered by the real app for a signed-in admin.
    browser, _ = await world.signed_in("admin")
    page = await browser.get(f"/runs/{task['run_id']}", headers=HTML)
    assert page.status_code == 200
    assert task["run_id"] in page.text
    assert_absent(page.text, TOKEN, PASSWORD)


@pytest.mark.parametrize(
    ("secrets", "env", "why"),
    [
        ({"SAFEBOARD_TASK_TOKEN": "x"}, {}, "reserved"),
        ({"safeboard_url": "x"}, {}, "reserved"),
        ({"1BAD": "x"}, {}, "variable name"),
        ({"BAD-NAME": "x"}, {}, "variable name"),
        ({"LR": "x"}, {"LR": "0.1"}, "also in env"),
        ({"EMPTY": ""}, {}, "secrets.EMPTY"),
        ({"NUL": "a\x00b"}, {}, "NUL"),
        ({"BIG": "é" * (MAX_SECRET_BYTES // 2 + 1)}, {}, "bytes of UTF-8"),
        ({"HUGE": "x" * (MAX_SECRET_BYTES + 1)}, {}, "secrets.HUGE"),
        ({f"S{i}": "x" for i in range(MAX_SECRETS + 1)}, {}, "secrets"),
        (TOO_MUCH, {}, "in all"),
        ({"LONE": "\ud800"}, {}, "surrogate"),
        ({"NUM": 5}, {}, "secrets.NUM"),
    ],
)
async def test_bad_secrets_are_refused_and_nothing_is_stored(
    world: World, secrets: dict[str, Any], env: dict[str, str], why: str
) -> None:
    client = admin(world)
    refused = await submit(client, env=env, secrets=secrets)
    assert refused.status_code == 422, refused.text
    assert why in refused.json()["error"]["message"]
    for value in secrets.values():
        if isinstance(value, str) and len(value) > 3:
            assert value[:40] not in refused.text
    assert (await client.get("/api/v1/tasks")).json()["tasks"] == []


def key_ids(world: World) -> list[str]:
    with world.services.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT DISTINCT key_id FROM task_secrets")).scalars())


async def test_rotation_keeps_secrets_readable(
    world: World, make_settings: Callable[..., Settings], db_url: str
) -> None:
    made = await submit(admin(world), secrets={"API_TOKEN": TOKEN})
    task_id = made.json()["id"]
    data_dir = world.settings.data_dir
    await world.close()
    rotate_secrets(data_dir)
    rotate_secrets(data_dir)  # twice before any start: both earlier keys are kept
    kept = _read(data_dir / SECRETS_FILE)["task_secrets_previous_keys"].split()
    assert len(kept) == 2
    for _ in range(5):
        rotate_secrets(data_dir)
    assert len(_read(data_dir / SECRETS_FILE)["task_secrets_previous_keys"].split()) == 4

    values = _read(data_dir / SECRETS_FILE)
    values["task_secrets_previous_keys"] = " ".join(kept)  # the two that matter, kept
    _write(data_dir / SECRETS_FILE, values)
    rotated = open_world(make_settings, db_url, fresh=False)
    try:
        before = key_ids(rotated)
        bootstrap(rotated.services, None)  # what each start does: re-seal under the new key
        current = rotated.services.task_secrets.box
        assert current is not None
        assert before != [current.key_id]
        assert key_ids(rotated) == [current.key_id]
        assert rotated.services.task_secrets.reseal() == (0, 0)  # nothing left to do
    finally:
        await rotated.close()

    # Re-sealed under the current key: the earlier ones are no longer needed.
    values = _read(data_dir / SECRETS_FILE)
    del values["task_secrets_previous_keys"]
    _write(data_dir / SECRETS_FILE, values)
    later = open_world(make_settings, db_url, fresh=False)
    try:
        leased = await agent(later).post("/api/v1/agent/lease", json={"free_gpus": []})
        assert leased.status_code == 200, leased.text
        assert (leased.json()["id"], leased.json()["secrets"]) == (task_id, {"API_TOKEN": TOKEN})
    finally:
        await later.close()


async def test_a_replaced_key_fails_the_task_with_its_reason(
    world: World, make_settings: Callable[..., Settings], db_url: str
) -> None:
    client = admin(world)
    sealed = (await submit(client, secrets={"API_TOKEN": TOKEN}, priority=5)).json()
    data_dir = world.settings.data_dir
    await world.close()
    values = _read(data_dir / SECRETS_FILE)  # secrets.toml replaced: a new task key
    values["task_secrets_key"] = secrets.token_urlsafe(32)
    _write(data_dir / SECRETS_FILE, values)

    replaced = open_world(make_settings, db_url, fresh=False)
    try:
        client = admin(replaced)
        plain = (await submit(client, env={"LR": "1"})).json()
        runner = agent(replaced)
        leased = await runner.post("/api/v1/agent/lease", json={"free_gpus": []})
        assert leased.status_code == 200, leased.text
        assert leased.json()["id"] == plain["id"]  # the sealed task failed; the next one ran
        assert leased.json()["secrets"] is None
        failed = (await client.get(f"/api/v1/tasks/{sealed['id']}")).json()
        assert failed["state"] == "failed"
        assert failed["reason"].startswith("its secrets cannot be decrypted: API_TOKEN was ")
        assert "task_secrets_key" in failed["reason"]
        run = (await client.get(f"/api/v1/runs/{sealed['run_id']}")).json()
        assert run["status"] == "failed"
        retry = await client.post(f"/api/v1/tasks/{sealed['id']}/retry")
        assert retry.status_code == 409, retry.text
        assert "cannot be decrypted" in retry.json()["error"]["message"]
        assert (await runner.post("/api/v1/agent/lease", json={"free_gpus": []})).status_code == 204
    finally:
        await replaced.close()
