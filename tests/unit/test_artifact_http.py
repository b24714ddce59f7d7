"""Pure parts of the artifact server: byte ranges, Content-Disposition, image sniffing,
signed preview links (S12)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.artifacts import store as store_module
from safeboard.artifacts.links import LinkClaims, check_link, sign_link
from safeboard.artifacts.ranges import (
    Unsatisfiable,
    content_disposition,
    parse_range,
    sniff_image,
)
from safeboard.artifacts.store import LocalStore
from safeboard.errors import DiskFull

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=2-5", 10, (2, 6)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=5-500", 10, (5, 10)),
        ("bytes=5-2", 10, None),  # invalid: ignored, the whole file
        ("bytes=0-1,3-4", 10, None),  # several: the whole file
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
        ("bytes=a-b", 10, None),
    ],
)
def test_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_ranges_outside_the_file_are_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 10)


@given(st.text(max_size=40), st.integers(0, 10**12))
def test_any_range_header_is_a_span_inside_the_file_or_refused(header: str, size: int) -> None:
    try:
        span = parse_range(header, size)
    except Unsatisfiable:
        return
    if span is not None:
        start, end = span
        assert 0 <= start < end <= size


@given(st.text(min_size=1, max_size=200))
def test_content_disposition_cannot_be_broken_out_of(name: str) -> None:
    value = content_disposition(name, inline=False)
    match = re.fullmatch(
        r'attachment; filename="([^"\\\r\n]*)"; filename\*=UTF-8\'\'([!-~]*)', value
    )
    assert match is not None, value
    assert "/" not in match.group(1)
    assert "\\" not in match.group(1)


def test_content_disposition_keeps_the_last_part_of_a_path_like_name() -> None:
    assert content_disposition("../../etc/passwd", inline=False) == (
        "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"
    )
    assert content_disposition("C:\\x\\é.png", inline=True).startswith('inline; filename="e.png"')


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        (b"<svg xmlns=", None),
        (b"<html>", None),
        (b"", None),
    ],
)
def test_only_magic_bytes_make_an_image(head: bytes, kind: str | None) -> None:
    assert sniff_image(head) == kind


def test_a_signed_link_holds_until_it_expires() -> None:
    claims = LinkClaims("a" * 32, 7, 1_000)
    token = sign_link(KEY, claims)
    assert check_link(KEY, token, now=999) == claims
    assert check_link(KEY, token, now=1_000) is None
    assert check_link(b"j" * 32, token, now=0) is None  # another server's key


@given(st.text(max_size=120))
def test_no_arbitrary_text_is_a_link(text: str) -> None:
    assert check_link(KEY, text, now=0) is None


@given(st.integers(0, 40), st.characters(codec="ascii"))
def test_changing_any_character_of_a_link_breaks_it(position: int, replacement: str) -> None:
    token = sign_link(KEY, LinkClaims("b" * 32, 3, 10**9))
    index = position % len(token)
    forged = token[:index] + replacement + token[index + 1 :]
    if forged != token:
        assert check_link(KEY, forged, now=0) is None


def test_a_full_disk_is_a_503_disk_full_not_a_crash() -> None:
    """/dev/full answers every write with ENOSPC, as a full disk would."""
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(DiskFull, match="full") as raised:
            store_module._FileWriter(fd).write(b"x" * 10)
        assert raised.value.headers["Retry-After"] == "30"
    finally:
        os.close(fd)


def test_an_empty_range_needs_no_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    reader = store.read("b" * 32, 0, 0)  # nothing stored under this key
    assert list(reader) == []
    assert store.sha256("b" * 32) == hashlib.sha256(b"").hexdigest()


def test_a_link_minted_by_a_key_names_that_key() -> None:
    claims = LinkClaims("c" * 32, 3, 10**9, credential="AbC123")
    token = sign_link(KEY, claims)
    assert token.split(".")[4] == "AbC123"
    assert check_link(KEY, token, now=0) == claims
    assert check_link(KEY, token.replace(".AbC123.", ".s."), now=0) is None
