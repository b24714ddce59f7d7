"""The artifact content-type allow-list: what the client proposes, what the server keeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.artifacts.schemas import ArtifactIn
from safeboard.client.artifacts import guess_content_type
from safeboard.content_types import ALLOWED_TYPES, BINARY, allowed_type, type_for_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("weights.pt", BINARY),  # mimetypes said application/vnd.snesdev-page-table
        ("model.PTH", BINARY),
        ("last.ckpt", BINARY),
        ("m.safetensors", BINARY),
        ("m.onnx", BINARY),
        ("plot.png", "image/png"),
        ("photo.JPG", "image/jpeg"),
        ("photo.jpeg", "image/jpeg"),
        ("a.gif", "image/gif"),
        ("a.webp", "image/webp"),
        ("figure.svg", "image/svg+xml"),
        ("train.log", "text/plain"),
        ("notes.txt", "text/plain"),
        ("table.csv", "text/csv"),
        ("config.json", "application/json"),
        ("config.yaml", "application/yaml"),
        ("README.md", "text/markdown"),
        ("report.html", "text/html"),
        ("paper.pdf", "application/pdf"),
        ("x.npy", "application/x-npy"),
        ("archive.tar.gz", "application/gzip"),
        ("dir/sub.d/file", BINARY),  # a dot in a directory is no extension
        ("C:\\runs\\out.csv", "text/csv"),
        (".png", BINARY),  # a hidden file named ".png" has no extension
        ("noextension", BINARY),
        ("evil.exe", BINARY),
        ("page.xhtml", BINARY),
    ],
)
def test_the_client_proposes_types_from_the_table(name: str, expected: str) -> None:
    assert type_for_name(name) == expected
    assert guess_content_type(name) == expected


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        ("image/png", "image/png"),
        ("text/csv", "text/csv"),
        ("application/vnd.snesdev-page-table", BINARY),
        ("application/x-msdownload", BINARY),
        ("text/javascript", BINARY),
        ("application/xhtml+xml", BINARY),
        ("image/svg+xml", "image/svg+xml"),
    ],
)
def test_the_server_keeps_only_types_of_the_table(declared: str, stored: str) -> None:
    spec = ArtifactIn(name="x", size=1, sha256="0" * 64, content_type=declared)
    assert spec.content_type == stored


WELL_FORMED = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,20}/[a-z0-9][a-z0-9!#$&^_.+-]{0,30}"


@given(st.from_regex(WELL_FORMED, fullmatch=True))
def test_any_declared_type_is_stored_from_the_table(declared: str) -> None:
    spec = ArtifactIn(name="x", size=1, sha256="0" * 64, content_type=declared)
    assert spec.content_type in ALLOWED_TYPES
    assert allowed_type(declared) == spec.content_type
