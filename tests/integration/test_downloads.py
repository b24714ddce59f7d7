"""Artifact downloads never follow a link or write into a file the client did not make
(issue 10, item 8): the SDK's and CLI's ``download`` against the in-process app. A planted
``.part`` (a symbolic link to a stand-in for ``~/.bashrc``, a dangling link, a hard link,
another user's file, a FIFO, a file open to others), a link at the final name, and a
``.part`` swapped while it is written are refused with the path and the fix, and the file
they lead to is unchanged; a genuine partial download still resumes from where it stopped."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from safeboard.auth.permissions import Role
from safeboard.client.downloads import UnsafeDownloadPath, download
from safeboard.client.http import ApiClient
from safeboard.errors import Conflict
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world
from tests.integration.test_artifact_expiry import _AppTransport, project_run
from tests.integration.test_artifacts import as_user, uploaded

pytestmark = pytest.mark.anyio

DATA = os.urandom(300_000)
BASHRC = b"# the person's shell startup file\nexport PATH=$HOME/bin:$PATH\n"


@dataclass
class Setup:
    client: ApiClient
    artifact_id: str
    out: Path  # the download directory
    bashrc: Path  # what a planted link or hard link leads to

    @property
    def target(self) -> Path:
        return self.out / "model.bin"

    @property
    def part(self) -> Path:
        return self.out / "model.bin.part"

    async def download(self, **kwargs: object) -> Path:
        def go() -> Path:
            return download(self.client, self.artifact_id, self.target, **kwargs)  # type: ignore[arg-type]

        return await anyio.to_thread.run_sync(go)


@pytest.fixture
async def setup(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Setup]:
    world: World = build_world(make_settings, f"sqlite:///{tmp_path / 'sb.db'}")
    world.user("olga", Role.MEMBER)
    olga = as_user(world, "olga")
    run_id = await project_run(olga)
    artifact = await uploaded(olga, run_id, DATA)
    client = ApiClient(world.base_url, world.key("olga"), transport=_AppTransport(world.app))
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    bashrc = home / ".bashrc"
    bashrc.write_bytes(BASHRC)
    yield Setup(client, artifact["id"], out, bashrc)
    client.close()
    await world.close()


def _refused_without_writing(refused: pytest.ExceptionInfo[UnsafeDownloadPath], s: Setup) -> None:
    message = refused.value.message
    assert str(s.part) in message
    assert "nothing was written to it" in message
    assert f"rm {s.part}" in message
    assert s.bashrc.read_bytes() == BASHRC
    assert not s.target.exists()


async def test_a_planted_part_symlink_is_never_written_through(setup: Setup) -> None:
    setup.part.symlink_to(setup.bashrc)
    with pytest.raises(UnsafeDownloadPath, match="symbolic link") as refused:
        await setup.download()
    _refused_without_writing(refused, setup)
    assert setup.part.is_symlink()  # left for the person to look at


async def test_a_dangling_part_symlink_creates_nothing_where_it_points(setup: Setup) -> None:
    planted = setup.bashrc.parent / ".profile"
    setup.part.symlink_to(planted)
    with pytest.raises(UnsafeDownloadPath) as refused:
        await setup.download()
    _refused_without_writing(refused, setup)
    assert not planted.exists()


async def test_a_hard_linked_part_is_refused(setup: Setup) -> None:
    os.link(setup.bashrc, setup.part)
    setup.bashrc.chmod(0o600)
    with pytest.raises(UnsafeDownloadPath, match="2 hard links") as refused:
        await setup.download()
    _refused_without_writing(refused, setup)


async def test_a_part_of_another_user_is_refused(setup: Setup) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    setup.part.write_bytes(DATA[:1000])
    setup.part.chmod(0o600)
    os.chown(setup.part, 65534, 65534)
    with pytest.raises(UnsafeDownloadPath, match="another user") as refused:
        await setup.download()
    _refused_without_writing(refused, setup)
    assert setup.part.read_bytes() == DATA[:1000]


@pytest.mark.parametrize("kind", ["fifo", "directory", "open to others"])
async def test_a_part_this_client_would_not_make_is_refused(setup: Setup, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(setup.part, 0o600)
    elif kind == "directory":
        setup.part.mkdir()
    else:
        setup.part.write_bytes(DATA[:1000])
        setup.part.chmod(0o666)
    with pytest.raises(UnsafeDownloadPath) as refused:
        await setup.download()
    _refused_without_writing(refused, setup)


async def test_a_link_at_the_final_name_is_never_written_through(setup: Setup) -> None:
    setup.target.symlink_to(setup.bashrc)
    with pytest.raises(Conflict, match="symbolic link"):
        await setup.download()
    assert setup.bashrc.read_bytes() == BASHRC
    # Asked to overwrite, the link itself is replaced; what it pointed to is untouched.
    assert await setup.download(overwrite=True) == setup.target
    assert not setup.target.is_symlink()
    assert setup.target.read_bytes() == DATA
    assert setup.bashrc.read_bytes() == BASHRC


async def test_a_genuine_partial_download_resumes(setup: Setup) -> None:
    fd = os.open(setup.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, DATA[:120_000])
    os.close(fd)
    starts: list[int] = []

    def progress(phase: str, done: int, _total: int) -> None:
        if phase == "download" and not starts:
            starts.append(done)

    assert await setup.download(progress=progress) == setup.target
    assert starts == [120_000]  # only the rest was asked for
    assert setup.target.read_bytes() == DATA
    assert stat.S_IMODE(setup.target.stat().st_mode) == 0o600
    assert not setup.part.exists()


async def test_a_part_swapped_while_it_is_written_is_refused(setup: Setup) -> None:
    moved = setup.out / "moved-away"

    def progress(phase: str, done: int, _total: int) -> None:
        if phase == "download" and done > 0 and not moved.exists():
            setup.part.rename(moved)
            setup.part.symlink_to(setup.bashrc)

    with pytest.raises(UnsafeDownloadPath, match="replaced") as refused:
        await setup.download(progress=progress)
    _refused_without_writing(refused, setup)


async def test_a_server_sending_too_much_fills_no_disk(setup: Setup) -> None:
    """Review finding: every byte the server sent was written, and the size compared only
    at the end, so a hostile server could fill the disk. Now the client stops at the
    artifact's size and keeps nothing."""
    import httpx

    from safeboard.errors import ServiceUnavailable

    inner = setup.client._http._transport

    class Endless(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = inner.handle_request(request)
            if not request.url.path.endswith("/content"):
                return response
            response.read()
            flood = iter([response.content, *([b"\0" * 65536] * 64)])  # 4 MiB more
            return httpx.Response(200, headers={"Content-Type": "application/octet-stream"},
                                  stream=httpx.ByteStream(b"".join(flood)))  # fmt: skip

    key = setup.client._http.headers["Authorization"].removeprefix("Bearer ")
    endless = ApiClient(setup.client.url, key, transport=Endless())
    try:
        with pytest.raises(ServiceUnavailable, match="more than the artifact's"):
            await anyio.to_thread.run_sync(
                lambda: download(endless, setup.artifact_id, setup.target, sleep=lambda _: None)
            )
    finally:
        endless.close()
    assert not setup.target.exists()
    assert not setup.part.exists()
