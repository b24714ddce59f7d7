"""The build hook that fetches the chart library (hatch_build.py): pinned digest, clear
failures, nothing but the named files written, and the installed files served."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from pathlib import Path

import hatch_build
import httpx
import pytest

from safeboard.web.run_page import CHART_LIBRARY


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tarball_that_differs_from_the_pinned_digest_is_refused() -> None:
    with pytest.raises(hatch_build.VendorError, match="does not match its pinned sha512"):
        hatch_build.check_integrity(b"not uplot")


def test_an_unreachable_registry_fails_with_a_message_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(hatch_build, "UPLOT_URL", "http://127.0.0.1:9/uplot.tgz")
    with pytest.raises(hatch_build.VendorError) as failure:
        hatch_build.fetch_vendor(tmp_path / "vendor")
    message = str(failure.value)
    assert "could not download its chart library from http://127.0.0.1:9/uplot.tgz" in message
    assert "npm registry is reachable" in message
    assert not (tmp_path / "vendor").exists()


def test_a_download_larger_than_the_cap_is_refused_without_holding_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A registry (or a proxy) that sends without end: reading stops past the cap."""
    sent: list[int] = []

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            block = b"\0" * 65536
            try:
                for _ in range(hatch_build.MAX_DOWNLOAD_BYTES // len(block) * 4):
                    self.wfile.write(block)
                    sent.append(len(block))
            except OSError:
                pass  # the reader hung up: what this test wants

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/uplot.tgz"
        monkeypatch.setattr(hatch_build, "UPLOT_URL", url)
        with pytest.raises(hatch_build.VendorError, match="sent more than"):
            hatch_build.fetch_vendor(tmp_path / "vendor")
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "vendor").exists()
    assert sum(sent) < hatch_build.MAX_DOWNLOAD_BYTES * 4  # it stopped reading


def test_only_the_named_files_are_extracted(tmp_path: Path) -> None:
    members = {name: f"/* {name} */".encode() for name in hatch_build.UPLOT_FILES}
    members["package/../../escape.js"] = b"alert(1)"
    members["package/dist/uPlot.iife.js"] = b"unused"
    target = tmp_path / "vendor"
    written = hatch_build.extract(tarball(members), target)
    assert sorted(p.name for p in written) == sorted(hatch_build.UPLOT_FILES.values())
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*hatch_build.UPLOT_FILES.values(), "VERSION"]
    )
    assert not (tmp_path / "escape.js").exists()
    assert hatch_build.up_to_date(target)
    (target / "uPlot.esm.js").unlink()
    assert not hatch_build.up_to_date(target)


@pytest.mark.anyio
async def test_the_installed_library_is_served_from_our_origin(client: httpx.AsyncClient) -> None:
    assert CHART_LIBRARY.is_file(), "run `pip install -e .` (the build hook fetches uPlot)"
    assert (CHART_LIBRARY.parent / "VERSION").read_text().split()[:2] == [
        "uplot",
        hatch_build.UPLOT_VERSION,
    ]
    for path, kind in (("uPlot.esm.js", "text/javascript"), ("uPlot.min.css", "text/css")):
        answer = await client.get(f"/static/vendor/{path}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(kind)
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/static/vendor/missing.js")).status_code == 404
