"""Static files under a build id (web/assets.py): pages name the current build, which may
be cached for a year; anything else is revalidated; the build id follows the content; the
build segment opens no way out of the static directory."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from safeboard.web.assets import (
    IMMUTABLE,
    REVALIDATE,
    STATIC_DIR,
    VersionedStaticFiles,
    build_id,
    content_hash,
)

pytestmark = pytest.mark.anyio

HTML = {"accept": "text/html"}


def test_the_build_id_follows_every_byte_and_name(tmp_path: Path) -> None:
    (tmp_path / "vendor").mkdir()
    (tmp_path / "app.js").write_text("export const a = 1;\n")
    (tmp_path / "vendor" / "lib.js").write_text("export default 2;\n")
    first = content_hash(tmp_path)
    assert re.fullmatch("[0-9a-f]{16}", first)
    assert content_hash(tmp_path) == first
    (tmp_path / "app.js").write_text("export const a = 2;\n")
    changed = content_hash(tmp_path)
    assert changed != first
    (tmp_path / "vendor" / "lib.js").rename(tmp_path / "vendor" / "lib2.js")
    renamed = content_hash(tmp_path)
    assert renamed != changed
    (tmp_path / "style.css").write_text("")  # even an empty new file
    assert content_hash(tmp_path) != renamed
    # Moving bytes from one file's end to the next file's start is a different build.
    a, b = tmp_path / "ab" / "a", tmp_path / "ab" / "b"
    a.parent.mkdir()
    a.write_text("xy"), b.write_text("z")
    before = content_hash(a.parent)
    a.write_text("x"), b.write_text("yz")
    assert content_hash(a.parent) != before


def test_modules_import_each_other_by_relative_urls() -> None:
    """An absolute import would leave the page's build (and its year-long cache)."""
    for module in STATIC_DIR.glob("*.js"):
        text = module.read_text()
        absolute = re.findall(r"""(?:\bfrom\s*|\bimport\s*\(\s*)["'](/[^"']*)""", text)
        assert absolute == [], module.name
        assert '"/static/' not in text, module.name


async def test_pages_name_the_current_build_and_its_files_may_be_kept(
    client: httpx.AsyncClient,
) -> None:
    named: set[str] = set()
    for path in ("/", "/login", "/invite"):
        page = await client.get(path, headers=HTML)
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store", path  # pages are never kept
        urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert urls, path
        assert all(u.startswith(f"/static/{build_id()}/") for u in urls), urls
        named.update(urls)
    assert f"/static/{build_id()}/app.js" in named
    assert f"/static/{build_id()}/api.js" in named
    for url in sorted(named):
        answer = await client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["cache-control"] == IMMUTABLE, url
        relative = url.removeprefix(f"/static/{build_id()}/")
        assert answer.content == (STATIC_DIR / relative).read_bytes(), url


async def test_other_builds_and_plain_paths_are_served_but_revalidated(
    client: httpx.AsyncClient,
) -> None:
    current = (STATIC_DIR / "app.js").read_bytes()
    older = "0123456789abcdef" if build_id() != "0123456789abcdef" else "fedcba9876543210"
    for url in (f"/static/{older}/app.js", "/static/app.js"):
        answer = await client.get(url)
        assert answer.status_code == 200, url
        assert answer.content == current, url
        assert answer.headers["cache-control"] == REVALIDATE, url
        again = await client.get(url, headers={"if-none-match": answer.headers["etag"]})
        assert again.status_code == 304, url
    # A segment that is not a build id is a directory name like any other.
    assert (await client.get("/static/not-a-build/app.js")).status_code == 404
    assert (await client.get(f"/static/{build_id()}/missing.js")).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "{build}/../../assets.py",
        "{build}/..%2f..%2fassets.py",
        "{build}/%2e%2e/%2e%2e/assets.py",
        "{build}/../../../settings.py",
        "..%2f{build}%2f..%2f..%2fassets.py",
        "{build}/vendor/../../routes.py",
        "{build}//etc/passwd",
        "{build}/%2fetc%2fpasswd",
    ],
)
async def test_the_build_segment_opens_no_way_out(client: httpx.AsyncClient, path: str) -> None:
    answer = await client.get("/static/" + path.format(build=build_id()))
    assert answer.status_code in (400, 404), path
    assert b"import" not in answer.content
    assert b"root:" not in answer.content


async def test_a_file_changed_after_start_is_never_cached_under_the_old_build(
    tmp_path: Path,
) -> None:
    """An upgrade installed in place before the restart: the running server's build id
    no longer names those bytes, so they are served to be revalidated, not kept a year."""
    (tmp_path / "app.js").write_text("export const v = 1;\n")
    old = (tmp_path / "app.js").stat().st_mtime - 60
    os.utime(tmp_path / "app.js", (old, old))
    static = VersionedStaticFiles(tmp_path)
    app = Starlette(routes=[Mount("/static", static)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        url = f"/static/{static.build}/app.js"
        first = await client.get(url)
        assert first.headers["cache-control"] == IMMUTABLE
        (tmp_path / "app.js").write_text("export const v = 2;\n")
        os.utime(tmp_path / "app.js", (old + 3600, time.time() + 1))
        changed = await client.get(url)
        assert changed.text == "export const v = 2;\n"
        assert changed.headers["cache-control"] == REVALIDATE
        # Replaced by a package manager that keeps the old modification time (dpkg,
        # rsync -a, tar x): another inode, and the same verdict.
        (tmp_path / "new.js").write_text("export const v = 3;\n")
        os.utime(tmp_path / "new.js", (old, old))
        (tmp_path / "new.js").replace(tmp_path / "app.js")
        replaced = await client.get(url)
        assert replaced.text == "export const v = 3;\n"
        assert replaced.headers["cache-control"] == REVALIDATE
