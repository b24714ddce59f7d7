"""The artifact file server over the API, on SQLite and PostgreSQL (S9, S12, S16, S17):
uploads that resume, checksums, limits, ranges, inline rules, signed links, and attacks
on every name and route parameter."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeboard.artifacts.service import ArtifactService
from safeboard.auth.permissions import Role, Scope
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio

PNG = (
    b"\x89PNG\r\n\x1a\n"
    b"\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
    b"\x00\x00\x00\x0cIDAT"
    + zlib.compress(b"\x00\xff\x00\x00")[:12].ljust(12, b"\x00")
    + b"\x00\x00\x00\x00\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(
        make_settings,
        db_url,
        artifacts={"max_file_bytes": 1_000_000, "project_quota_bytes": 1_500_000},
    )
    built.user("admin", Role.ADMIN)
    for name in ("olga", "vic", "eve"):
        built.user(name)
    yield built
    await built.close()


def as_user(world: World, name: str, scope: Scope = Scope.ADMIN) -> httpx.AsyncClient:
    return world.client(Authorization=f"Bearer {world.key(name, scope)}")


def service(world: World) -> ArtifactService:
    found: ArtifactService = world.services.artifacts
    return found


async def _run(world: World) -> tuple[httpx.AsyncClient, str]:
    olga = as_user(world, "olga")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = await olga.post("/api/v1/projects/mnist/runs", json={"name": "baseline"})
    assert run.status_code == 201, run.text
    return olga, run.json()["id"]


async def declare(
    client: httpx.AsyncClient, run_id: str, data: bytes, name: str = "model.bin", **extra: Any
) -> httpx.Response:
    body = {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **extra}
    return await client.post(f"/api/v1/runs/{run_id}/artifacts", json=body)


async def put(
    client: httpx.AsyncClient, artifact_id: str, data: bytes, offset: int = 0
) -> httpx.Response:
    return await client.put(
        f"/api/v1/artifacts/{artifact_id}/content",
        content=data,
        headers={"Upload-Offset": str(offset), "Content-Type": "application/octet-stream"},
    )


async def uploaded(
    client: httpx.AsyncClient, run_id: str, data: bytes, name: str = "model.bin", **extra: Any
) -> dict[str, Any]:
    made = await declare(client, run_id, data, name, **extra)
    assert made.status_code == 201, made.text
    done = await put(client, made.json()["id"], data)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "ready"
    result: dict[str, Any] = done.json()
    return result


async def test_a_runs_artifacts_come_a_page_at_a_time_each_once(world: World) -> None:
    olga, run_id = await _run(world)
    other = (await olga.post("/api/v1/projects/mnist/runs", json={"name": "other"})).json()
    made = []
    for i in range(23):  # empty files are ready at once; one still uploading among them
        data = b"" if i != 7 else b"partial"
        answer = await declare(olga, run_id, data, name=f"f{i:02}")
        assert answer.status_code == 201
        made.append(answer.json()["id"])
    await declare(olga, other["id"], b"", name="elsewhere")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        page = (await olga.get(f"/api/v1/runs/{run_id}/artifacts", params=params)).json()
        pages += 1
        assert page["total"] == 23
        assert len(page["items"]) == (5 if pages < 5 else 3)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (pages, seen) == (5, made)  # in the order declared, none twice, none missed
    whole = (await olga.get(f"/api/v1/runs/{run_id}/artifacts")).json()
    assert ([i["id"] for i in whole["items"]], whole["next_cursor"]) == (made, None)
    for bad in ({"cursor": "bm90IGEgY3Vyc29y"}, {"cursor": "%%%"}, {"limit": "0"},
                {"limit": "1001"}, {"cursor": "x" * 201}):  # fmt: skip
        refused = await olga.get(f"/api/v1/runs/{run_id}/artifacts", params=bad)
        assert refused.status_code in (400, 422), (bad, refused.text)
    # Well-formed cursors with a position no server makes: a lone surrogate, a NUL, a
    # time without its zone, a number for an id. 400 on both lists, never a 500.
    when = "2024-01-01T00:00:00+00:00"
    for position in ([when, "\ud800"], [when, "a\u0000b"], [when[:19], "ab" * 16],
                     [when, 5], [when, "AB" * 16], [when, "ab" * 16, "extra"],
                     ["0001-01-01T00:00:00+01:00", "ab" * 16],
                     ["9999-12-31T23:59:59-01:00", "ab" * 16]):  # fmt: skip
        forged = base64.urlsafe_b64encode(json.dumps(position).encode()).decode()
        for path in (f"/api/v1/runs/{run_id}/artifacts", "/api/v1/projects/mnist/runs"):
            refused = await olga.get(path, params={"cursor": forged})
            assert refused.status_code == 400, (position, path, refused.text)
            assert "cursor" in refused.json()["error"]["message"]
    eve = as_user(world, "eve")  # no grant: the run does not exist for her
    assert (await eve.get(f"/api/v1/runs/{run_id}/artifacts")).status_code == 404


def stored_files(world: World) -> list[Path]:
    return sorted(p for p in world.settings.artifact_dir.rglob("*") if p.is_file())


def assert_file_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


async def test_upload_download_round_trip(world: World) -> None:
    olga, run_id = await _run(world)
    data = os.urandom(300_000)
    artifact = await uploaded(olga, run_id, data, name="../../etc/evil.html", kind="model")
    assert artifact["name"] == "../../etc/evil.html"  # metadata, kept as given
    assert artifact["created_by"] == "olga"
    # Stored under the server-made id inside the artifact directory, nowhere else.
    (path,) = stored_files(world)
    assert path.name == artifact["id"]
    assert path.parent.parent == world.settings.artifact_dir
    assert path.stat().st_mode & 0o077 == 0
    got = await olga.get(f"/api/v1/artifacts/{artifact['id']}/content")
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith('attachment; filename="evil.html"')
    assert_file_headers(got)
    listed = (await olga.get(f"/api/v1/runs/{run_id}/artifacts")).json()["items"]
    assert [a["id"] for a in listed] == [artifact["id"]]


async def test_an_interrupted_upload_resumes_from_what_is_stored(world: World) -> None:
    olga, run_id = await _run(world)
    data = os.urandom(500_000)
    artifact_id = (await declare(olga, run_id, data)).json()["id"]
    first = await put(olga, artifact_id, data[:200_000])
    assert first.json()["state"] == "uploading"
    assert first.json()["received"] == 200_000
    assert (await olga.get(f"/api/v1/artifacts/{artifact_id}")).json()["received"] == 200_000
    wrong = await put(olga, artifact_id, data[100_000:], offset=100_000)
    assert wrong.status_code == 409
    assert "200000 bytes stored" in wrong.json()["error"]["message"]
    not_yet = await olga.get(f"/api/v1/artifacts/{artifact_id}/content")
    assert not_yet.status_code == 409
    rest = await put(olga, artifact_id, data[200_000:], offset=200_000)
    assert rest.json()["state"] == "ready"
    assert (await olga.get(f"/api/v1/artifacts/{artifact_id}/content")).content == data
    # Declaring again with the same upload id finds the same artifact (a resumed client).
    again = await declare(olga, run_id, b"x", upload_id="upload-0001")
    assert again.status_code == 201
    same = await declare(olga, run_id, b"x", upload_id="upload-0001")
    assert same.status_code == 200
    assert same.json()["id"] == again.json()["id"]
    other = await declare(olga, run_id, b"y", upload_id="upload-0001")
    assert other.status_code == 409


async def test_a_wrong_checksum_discards_the_upload(world: World) -> None:
    olga, run_id = await _run(world)
    data = os.urandom(10_000)
    artifact_id = (await declare(olga, run_id, data)).json()["id"]
    tampered = bytearray(data)
    tampered[5000] ^= 1
    refused = await put(olga, artifact_id, bytes(tampered))
    assert refused.status_code == 422
    assert "sha256" in refused.json()["error"]["message"]
    assert (await olga.get(f"/api/v1/artifacts/{artifact_id}")).json()["received"] == 0
    assert stored_files(world) == []
    assert (await put(olga, artifact_id, data)).json()["state"] == "ready"
    # Resumed uploads are checked by reading the stored bytes back.
    second = (await declare(olga, run_id, data, name="b")).json()["id"]
    await put(olga, second, data[:4000])
    bad = await put(olga, second, bytes(tampered[4000:]), offset=4000)
    assert bad.status_code == 422


async def test_limits_answer_413_before_the_body(world: World) -> None:
    olga, run_id = await _run(world)
    too_big = await olga.post(
        f"/api/v1/runs/{run_id}/artifacts",
        json={"name": "huge", "size": 1_000_001, "sha256": "0" * 64},
    )
    assert too_big.status_code == 413
    artifact_id = (await declare(olga, run_id, b"a" * 1000)).json()["id"]
    longer = await put(olga, artifact_id, b"a" * 1001)
    assert longer.status_code == 413
    assert stored_files(world) == [] or all(p.stat().st_size <= 1000 for p in stored_files(world))

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(3):
            yield b"a" * 600

    streamed = await olga.put(
        f"/api/v1/artifacts/{artifact_id}/content", content=chunked(),
        headers={"Upload-Offset": "0"},
    )  # fmt: skip
    assert streamed.status_code == 413
    assert all(p.stat().st_size <= 1000 for p in stored_files(world))
    # The quota counts every artifact of the project, finished or not.
    assert (await declare(olga, run_id, os.urandom(900_000), name="one")).status_code == 201
    over = await declare(olga, run_id, os.urandom(700_000), name="two")
    assert over.status_code == 413
    assert "quota" in over.json()["error"]["message"]


async def test_ranges_are_exact(world: World) -> None:
    olga, run_id = await _run(world)
    data = os.urandom(100_000)
    artifact_id = (await uploaded(olga, run_id, data))["id"]
    url = f"/api/v1/artifacts/{artifact_id}/content"

    async def get(**headers: str) -> httpx.Response:
        return await olga.get(url, headers=headers)

    part = await get(Range="bytes=10-19")
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == "bytes 10-19/100000"
    assert (await get(Range="bytes=99990-")).content == data[99990:]
    assert (await get(Range="bytes=-5")).content == data[-5:]
    assert (await get(Range="bytes=99999-200000")).content == data[99999:]
    whole = await get(Range="bytes=0-1,5-9")  # several ranges: the whole file
    assert whole.status_code == 200
    assert whole.content == data
    assert (await get(Range="bytes=50-10")).status_code == 200  # invalid: ignored
    outside = await get(Range="bytes=100000-")
    assert outside.status_code == 416
    assert outside.headers["content-range"] == "bytes */100000"
    etag = part.headers["etag"]
    assert (await get(**{"If-None-Match": etag})).status_code == 304
    stale = await get(Range="bytes=0-9", **{"If-Range": '"not-this-version"'})
    assert stale.status_code == 200
    assert stale.content == data
    fresh = await get(Range="bytes=0-9", **{"If-Range": etag})
    assert fresh.status_code == 206


@pytest.mark.parametrize(
    ("data", "declared", "inline", "served"),
    [
        (PNG, "image/png", True, "image/png"),
        (b"<html><script>alert(1)</script></html>", "text/html", False, None),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
         "image/svg+xml", False, None),
        (b"<html><script>alert(1)</script></html>", "image/png", False, None),  # a lie
    ],
)  # fmt: skip
async def test_only_proven_raster_images_show_inline(
    world: World, data: bytes, declared: str, inline: bool, served: str | None
) -> None:
    olga, run_id = await _run(world)
    artifact = await uploaded(olga, run_id, data, name="x", kind="image", content_type=declared)
    got = await olga.get(f"/api/v1/artifacts/{artifact['id']}/content")
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("inline" if inline else "attachment")
    assert got.headers["content-type"] == (served or "application/octet-stream")
    assert_file_headers(got)


async def test_viewers_read_editors_write_strangers_see_nothing(world: World) -> None:
    olga, run_id = await _run(world)
    artifact_id = (await uploaded(olga, run_id, b"weights"))["id"]
    vic, eve = as_user(world, "vic"), as_user(world, "eve")
    await olga.put("/api/v1/projects/mnist/grants/vic", json={"role": "viewer"})
    assert (await vic.get(f"/api/v1/artifacts/{artifact_id}/content")).content == b"weights"
    assert (await declare(vic, run_id, b"mine")).status_code == 403
    assert (await vic.delete(f"/api/v1/artifacts/{artifact_id}")).status_code == 403
    pending = (await declare(olga, run_id, b"more", name="m")).json()["id"]
    assert (await put(vic, pending, b"more")).status_code == 403
    for url in (f"/api/v1/artifacts/{artifact_id}", f"/api/v1/artifacts/{artifact_id}/content",
                f"/api/v1/runs/{run_id}/artifacts"):  # fmt: skip
        assert (await eve.get(url)).status_code == 404
    assert (await eve.post(f"/api/v1/artifacts/{artifact_id}/preview")).status_code == 404
    read_key = as_user(world, "olga", Scope.READ)
    assert (await declare(read_key, run_id, b"k")).status_code == 403
    assert (await put(read_key, pending, b"more")).status_code == 403


async def test_downloads_and_deletions_are_audited(world: World) -> None:
    olga, run_id = await _run(world)
    artifact_id = (await uploaded(olga, run_id, b"data"))["id"]
    await olga.get(f"/api/v1/artifacts/{artifact_id}/content", headers={"Range": "bytes=0-1"})
    assert (await olga.delete(f"/api/v1/artifacts/{artifact_id}")).status_code == 204
    assert stored_files(world) == []
    assert (await olga.get(f"/api/v1/artifacts/{artifact_id}")).status_code == 404
    admin = as_user(world, "admin")
    entries = (await admin.get("/api/v1/audit")).json()
    mine = [e for e in entries if e["target"] == f"artifact:{artifact_id}"]
    actions = sorted(e["action"] for e in mine)
    assert actions == ["artifact.deleted", "artifact.downloaded"]
    downloaded = next(e for e in mine if e["action"] == "artifact.downloaded")
    assert downloaded["detail"]["range"] == "0-1"


async def test_empty_files_are_ready_at_once(world: World) -> None:
    olga, run_id = await _run(world)
    made = await declare(olga, run_id, b"")
    assert made.json()["state"] == "ready"
    got = await olga.get(f"/api/v1/artifacts/{made.json()['id']}/content")
    assert got.status_code == 200
    assert got.content == b""
    wrong = await olga.post(
        f"/api/v1/runs/{run_id}/artifacts", json={"name": "e", "size": 0, "sha256": "1" * 64}
    )
    assert wrong.status_code == 422


async def test_preview_links_are_short_lived_and_bound(world: World) -> None:
    olga, run_id = await _run(world)
    first = (await uploaded(olga, run_id, PNG, name="a.png", content_type="image/png"))["id"]
    second = (await uploaded(olga, run_id, b"other", name="b"))["id"]
    link = (await olga.post(f"/api/v1/artifacts/{first}/preview")).json()
    assert link["url"].startswith("/files/preview/sbp1.")
    expires = datetime.fromisoformat(link["expires_at"])
    assert expires - datetime.now(UTC) <= timedelta(minutes=5)
    anonymous = world.client()  # no credentials at all: the link is enough
    shown = await anonymous.get(link["url"])
    assert shown.status_code == 200
    assert shown.content == PNG
    assert shown.headers["content-disposition"].startswith("inline")
    assert_file_headers(shown)
    token = link["url"].rsplit("/", 1)[1]
    prefix, artifact_id, user, until, credential, mac = token.split(".")
    forgeries = [
        f"{prefix}.{second}.{user}.{until}.{credential}.{mac}",  # another artifact
        f"{prefix}.{artifact_id}.{int(user) + 1}.{until}.{credential}.{mac}",  # another user
        f"{prefix}.{artifact_id}.{user}.{int(until) + 3600}.{credential}.{mac}",  # longer life
        f"{prefix}.{artifact_id}.{user}.{until}.s.{mac}",  # another credential
        f"{prefix}.{artifact_id}.{user}.{until}.{credential}.{mac[:-2]}AA",  # another MAC
        f"{prefix}.{artifact_id}.{user}.{until}.{mac}",
        "../../secrets.toml",
    ]
    for forged in forgeries:
        assert (await anonymous.get(f"/files/preview/{forged}")).status_code == 404, forged
    # Expired: the service's clock moves past the expiry.
    later = datetime.now(UTC) + timedelta(minutes=6)
    service(world).clock = lambda: later
    assert (await anonymous.get(link["url"])).status_code == 404
    service(world).clock = lambda: datetime.now(UTC)
    assert (await anonymous.get(link["url"])).status_code == 200
    # Dead once the user may no longer read it: grant removed, or account disabled.
    admin = as_user(world, "admin")
    await olga.put("/api/v1/projects/mnist/grants/vic", json={"role": "viewer"})
    vic = as_user(world, "vic")
    vic_link = (await vic.post(f"/api/v1/artifacts/{first}/preview")).json()["url"]
    assert (await anonymous.get(vic_link)).status_code == 200
    assert (await olga.delete("/api/v1/projects/mnist/grants/vic")).status_code == 204
    assert (await anonymous.get(vic_link)).status_code == 404
    disabled = await admin.patch("/api/v1/users/olga", json={"active": False})
    assert disabled.status_code == 200, disabled.text
    assert (await anonymous.get(link["url"])).status_code == 404


@pytest.mark.parametrize(
    "artifact_id",
    ["..%2F..%2Fsecrets.toml", "..%252F..%252Fsecrets.toml", "%2Fetc%2Fpasswd",
     "..%5C..%5Csecrets.toml", "abc%00def", "0" * 32, "A" * 32, "%2e%2e%2f%2e%2e%2fsecrets.toml",
     "..\\..\\secrets.toml", "%2Fdata%2Fsecrets.toml"],
)  # fmt: skip
async def test_route_parameters_never_reach_the_filesystem(world: World, artifact_id: str) -> None:
    olga, run_id = await _run(world)
    await uploaded(olga, run_id, b"real")
    secrets_before = (world.settings.data_dir / "secrets.toml").read_bytes()
    for method, url in (
        ("GET", f"/api/v1/artifacts/{artifact_id}"),
        ("GET", f"/api/v1/artifacts/{artifact_id}/content"),
        ("PUT", f"/api/v1/artifacts/{artifact_id}/content"),
        ("DELETE", f"/api/v1/artifacts/{artifact_id}"),
        ("POST", f"/api/v1/artifacts/{artifact_id}/preview"),
        ("POST", f"/api/v1/runs/{artifact_id}/artifacts"),
        ("GET", f"/files/preview/{artifact_id}"),
    ):
        headers = {"Upload-Offset": "0"} if method == "PUT" else {}
        body = b"x" if method == "PUT" else None
        if method == "POST" and "runs" in url:
            response = await olga.post(url, json={"name": "x", "size": 1, "sha256": "0" * 64})
        else:
            response = await olga.request(method, url, content=body, headers=headers)
        assert response.status_code in (400, 404, 405, 422), (method, url, response.text)
    assert (world.settings.data_dir / "secrets.toml").read_bytes() == secrets_before
    assert len(stored_files(world)) == 1


async def test_a_symlink_planted_in_storage_is_never_followed(world: World) -> None:
    olga, run_id = await _run(world)
    artifact = await uploaded(olga, run_id, b"x" * 64)
    (path,) = stored_files(world)
    target = world.settings.data_dir / "secrets.toml"
    path.unlink()
    path.symlink_to(target)
    got = await olga.get(f"/api/v1/artifacts/{artifact['id']}/content")
    assert got.status_code == 500
    assert b"secure" not in got.content
    assert "request_id" in got.json()["error"]
    # An upload into a planted link writes nothing through it.
    before = target.read_bytes()
    pending = (await declare(olga, run_id, b"y" * 10, name="y")).json()["id"]
    planted = world.settings.artifact_dir / pending[:2] / pending
    planted.parent.mkdir(mode=0o700, exist_ok=True)
    planted.symlink_to(target)
    refused = await put(olga, pending, b"y" * 10)
    assert refused.status_code == 500
    assert target.read_bytes() == before


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(min_size=1, max_size=60))
async def test_any_name_is_metadata_or_a_clean_refusal(world: World, name: str) -> None:
    client = world.client(Authorization=f"Bearer {world.key('admin')}")
    runs = await client.get("/api/v1/projects/fuzz")
    if runs.status_code == 404:
        await client.post("/api/v1/projects", json={"name": "fuzz"})
        await client.post("/api/v1/projects/fuzz/runs", json={"name": "r", "id": "f" * 32})
    response = await declare(client, "f" * 32, b"z", name=name)
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        artifact_id = response.json()["id"]
        assert response.json()["name"] == name
        done = await put(client, artifact_id, b"z")
        assert done.status_code == 200
        got = await client.get(f"/api/v1/artifacts/{artifact_id}/content")
        disposition = got.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="')
        assert "\r" not in disposition
        assert "\n" not in disposition
        assert disposition.count('"') == 2
    for path in world.settings.artifact_dir.rglob("*"):
        assert path.resolve().is_relative_to(world.settings.artifact_dir.resolve())


async def test_a_delete_waits_for_the_upload_writing_the_file(world: World) -> None:
    """Deleting mid-upload would let the bytes land in an unlinked file, outside the quota."""
    olga, run_id = await _run(world)
    data = os.urandom(900_000)
    artifact_id = (await declare(olga, run_id, data)).json()["id"]
    gate = anyio.Event()

    async def body() -> AsyncIterator[bytes]:  # the server writes in 1 MiB steps or at the end
        yield data[:10_000]
        await gate.wait()
        yield data[10_000:]

    results: dict[str, httpx.Response] = {}

    async def upload() -> None:
        results["put"] = await olga.put(
            f"/api/v1/artifacts/{artifact_id}/content", content=body(),
            headers={"Upload-Offset": "0"},
        )  # fmt: skip

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(upload)
        with anyio.fail_after(10):  # the upload holds the file (its writer is open)
            while not stored_files(world):
                await anyio.sleep(0.02)
        refused = await olga.delete(f"/api/v1/artifacts/{artifact_id}")
        assert refused.status_code == 409
        assert "in progress" in refused.json()["error"]["message"]
        gate.set()
    assert results["put"].json()["state"] == "ready"
    assert (await olga.delete(f"/api/v1/artifacts/{artifact_id}")).status_code == 204
    assert stored_files(world) == []


async def test_concurrent_declarations_of_one_upload_find_the_same_artifact(world: World) -> None:
    """What a client retrying after a timeout does; on PostgreSQL the lookup used to race."""
    olga, run_id = await _run(world)
    results: list[httpx.Response] = []

    async def one() -> None:
        results.append(await declare(olga, run_id, b"retried", upload_id="retry-0001"))

    for _ in range(3):
        results.clear()
        async with anyio.create_task_group() as tasks:
            for _ in range(4):
                tasks.start_soon(one)
        assert sorted(r.status_code for r in results) in ([200, 200, 200, 201], [200] * 4)
        assert len({r.json()["id"] for r in results}) == 1


async def test_odd_headers_are_answered_not_crashed_on(world: World) -> None:
    olga, run_id = await _run(world)
    artifact_id = (await uploaded(olga, run_id, b"0123456789"))["id"]
    url = f"/api/v1/artifacts/{artifact_id}/content"
    huge = await olga.get(url, headers={"Range": "bytes=0-" + "9" * 4301})
    assert huge.status_code == 200  # malformed: ignored
    assert huge.content == b"0123456789"
    pending = (await declare(olga, run_id, b"abcdef", name="p")).json()["id"]
    for header in ("bytes=-0", "bytes=100-", "bytes=0-1"):
        early = await olga.get(f"/api/v1/artifacts/{pending}/content", headers={"Range": header})
        assert early.status_code == 409, header
    odd = await olga.put(
        f"/api/v1/artifacts/{pending}/content", content=b"abcdef",
        headers={"Upload-Offset": b"\xb9"},
    )  # fmt: skip
    assert odd.status_code == 422  # a clean refusal, not the 500 of int("¹")
    for tags in (f'"x", "{"0" * 64}", {huge.headers["etag"]}', f"W/{huge.headers['etag']}"):
        assert (await olga.get(url, headers={"If-None-Match": tags})).status_code == 304
    missing = await olga.get(f"/api/v1/artifacts/{'0' * 32}/content")
    assert missing.status_code == 404
    assert_file_headers(missing)  # errors about artifact bytes are sandboxed too


async def test_empty_files_have_no_ranges_and_prove_no_type(world: World) -> None:
    olga, run_id = await _run(world)
    made = await declare(olga, run_id, b"", name="e.png", kind="image", content_type="image/png")
    artifact_id = made.json()["id"]
    assert made.json()["content_type"] == "application/octet-stream"
    got = await olga.get(f"/api/v1/artifacts/{artifact_id}/content")
    assert got.headers["content-disposition"].startswith("attachment")
    for header in ("bytes=-5", "bytes=0-"):
        ranged = await olga.get(
            f"/api/v1/artifacts/{artifact_id}/content", headers={"Range": header}
        )
        assert ranged.status_code == 416
        assert ranged.headers["content-range"] == "bytes */0"


async def test_preview_links_die_with_their_key_and_audit_their_ranges(world: World) -> None:
    olga, run_id = await _run(world)
    artifact_id = (await uploaded(olga, run_id, PNG, name="a.png", content_type="image/png"))["id"]
    key = world.key("olga", Scope.READ)
    reader = world.client(Authorization=f"Bearer {key}")
    link = (await reader.post(f"/api/v1/artifacts/{artifact_id}/preview")).json()["url"]
    anonymous = world.client()
    part = await anonymous.get(link, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206
    assert part.content == PNG[:4]
    held = await anonymous.get(link, headers={"If-None-Match": part.headers["etag"]})
    assert held.status_code == 304
    key_id = key.split("_")[1]
    assert (await olga.delete(f"/api/v1/keys/{key_id}")).status_code == 204
    assert (await anonymous.get(link)).status_code == 404
    admin = as_user(world, "admin")
    entries = [
        e for e in (await admin.get("/api/v1/audit")).json()
        if e["action"] == "artifact.downloaded" and e["target"] == f"artifact:{artifact_id}"
    ]  # fmt: skip
    assert [e["detail"].get("range") for e in entries] == ["0-3"]  # the 304 is no download
    assert entries[0]["actor"] == "user:olga (preview link)"


@pytest.mark.parametrize("forget", [False, True])
async def test_uploads_in_several_requests_are_checked_whole(world: World, forget: bool) -> None:
    """The running checksum is carried from request to request; when it is not (another
    replica, a restart: ``forget``), the stored file is read again. Either way a wrong byte
    in any part is caught."""
    olga, run_id = await _run(world)
    data = os.urandom(300_000)
    for tamper in (False, True):
        artifact_id = (await declare(olga, run_id, data, name=f"{tamper}")).json()["id"]
        for start in range(0, len(data), 100_000):
            part = bytearray(data[start : start + 100_000])
            if tamper and start == 100_000:
                part[7] ^= 1
            if forget:
                service(world)._digests.clear()
            answer = await put(olga, artifact_id, bytes(part), offset=start)
        assert answer.status_code == (422 if tamper else 200), answer.text
        if not tamper:
            assert answer.json()["state"] == "ready"
            got = await olga.get(f"/api/v1/artifacts/{artifact_id}/content")
            assert got.content == data


@pytest.mark.parametrize(
    ("name", "declared", "stored"),
    [
        ("weights.pt", "application/vnd.snesdev-page-table", "application/octet-stream"),
        ("run.exe", "application/x-msdownload", "application/octet-stream"),
        ("page.js", "text/javascript", "application/octet-stream"),
        ("table.csv", "text/csv", "text/csv"),
    ],
)
async def test_only_types_of_the_allow_list_are_stored(
    world: World, name: str, declared: str, stored: str
) -> None:
    olga, run_id = await _run(world)
    artifact = await uploaded(olga, run_id, b"a,b\n1,2\n", name=name, content_type=declared)
    assert artifact["content_type"] == stored
    listed = (await olga.get(f"/api/v1/runs/{run_id}/artifacts")).json()["items"]
    assert [item["content_type"] for item in listed] == [stored]
