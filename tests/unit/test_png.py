"""The SDK's PNG writer (used when PIL is not installed), the image checks of
``run.log_image``, and the client's upload ids and file names for artifacts: property
tests over open-ended input. PNGs are read back by a decoder written here from the PNG
specification (every filter type, CRCs checked), not by the code under test."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from safeboard.artifacts.schemas import ArtifactIn
from safeboard.client.artifacts import guess_content_type, safe_filename, upload_id_for
from safeboard.errors import InvalidRequest
from safeboard.sdk.images import Pixels, encode_png, pixels_of, png_bytes

CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # PNG colour type -> samples per pixel


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, row: bytearray, prior: bytes, bpp: int) -> bytearray:
    for i in range(len(row)):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        if kind == 1:
            row[i] = (row[i] + a) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + b) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (a + b) // 2) & 0xFF
        elif kind == 4:
            row[i] = (row[i] + _paeth(a, b, c)) & 0xFF
        elif kind != 0:
            raise AssertionError(f"filter type {kind}")
    return row


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit non-interlaced PNG as an HxWxC uint8 array; fails on any defect."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        payload = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + payload) & 0xFFFFFFFF == crc, kind
        chunks.append((kind, payload))
        position += 12 + length
    assert chunks[0][0] == b"IHDR"
    assert chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0)
    bpp = CHANNELS[colour]
    raw = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    stride = width * bpp
    assert len(raw) == height * (stride + 1)
    rows, prior = [], bytes(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        row = bytes(_unfilter(line[0], bytearray(line[1:]), prior, bpp))
        rows.append(row)
        prior = row
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width, bpp)


images = hnp.arrays(
    np.uint8,
    st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([0, 1, 3, 4])).map(
        lambda s: s[:2] if s[2] == 0 else s
    ),
)


@given(images)
def test_png_writer_round_trips_any_uint8_image(array: np.ndarray) -> None:
    pixels = pixels_of(array)
    decoded = decode_png(encode_png(pixels))
    expected = array if array.ndim == 3 else array[:, :, None]
    assert decoded.shape == expected.shape
    assert np.array_equal(decoded, expected)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3)),
                  elements=st.floats(0, 1)))  # fmt: skip
def test_float_images_scale_to_bytes(array: np.ndarray) -> None:
    decoded = decode_png(png_bytes(pixels_of(array)))
    assert np.abs(decoded.astype(int) - np.rint(array * 255)).max() <= 1


def test_the_pixels_are_copied_when_logged() -> None:
    array = np.zeros((4, 4), dtype=np.uint8)
    pixels = pixels_of(array)
    array[:] = 255  # the training loop reuses its buffer
    assert decode_png(encode_png(pixels)).max() == 0


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (np.zeros((4, 4, 5), np.uint8), "HxW"),
        (np.zeros((4,), np.uint8), "HxW"),
        (np.zeros((4, 4), np.int32), "uint8 or float"),
        (np.full((4, 4), 1.5), "[0, 1]"),
        (np.full((4, 4), np.nan), "[0, 1]"),
        (np.zeros((0, 4), np.uint8), "pixels a side"),
        ("not an image", "numpy array"),
        ([[0, 1], [1, 0]], "numpy array"),
    ],
)
def test_what_is_not_an_image_is_refused_with_a_reason(bad: object, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says.replace("[", r"\[").replace("]", r"\]")):
        pixels_of(bad)


def test_pixels_must_fill_the_image() -> None:
    with pytest.raises(InvalidRequest):
        encode_png(Pixels(b"\x00" * 11, 2, 2, 3))


ids = st.text(max_size=40)
paths = st.text(min_size=1, max_size=80).map(lambda s: Path("/") / s.replace("\x00", ""))
shas = st.text("0123456789abcdef", min_size=64, max_size=64)
upload = st.tuples(ids, paths, st.text(min_size=1, max_size=50), st.integers(0, 2**62),
                   st.integers(0, 2**63), shas)  # fmt: skip


def _id(parts: tuple[str, Path, str, int, int, str]) -> str:
    run_id, path, name, size, mtime, sha = parts
    return upload_id_for(run_id, path, name=name, size=size, mtime_ns=mtime, sha256=sha)


@given(upload)
def test_upload_ids_are_stable_and_accepted_by_the_server(
    parts: tuple[str, Path, str, int, int, str],
) -> None:
    upload_id = _id(parts)
    assert upload_id == _id(parts)  # the same upload again: the same id, so it resumes
    ArtifactIn(name="x", size=0, sha256="0" * 64, upload_id=upload_id)  # the server's schema


@given(upload, st.integers(0, 5), st.data())
def test_a_different_upload_gets_a_different_id(
    parts: tuple[str, Path, str, int, int, str], which: int, data: st.DataObject
) -> None:
    changed = list(parts)
    strategy = [ids, paths, st.text(min_size=1, max_size=50), st.integers(0, 2**62),
                st.integers(0, 2**63), shas][which]  # fmt: skip
    changed[which] = data.draw(strategy.filter(lambda v: v != parts[which]))
    assert _id(tuple(changed)) != _id(parts)  # type: ignore[arg-type]


@given(st.text(max_size=300), st.text("0123456789abcdef", min_size=32, max_size=32))
def test_any_artifact_name_gives_a_harmless_file_name(name: str, fallback: str) -> None:
    filename = safe_filename(name, fallback)
    assert filename
    assert not {"/", "\\", "\x00"} & set(filename)
    assert not filename.startswith(".")  # neither hidden, nor "." or ".."
    assert len(filename.encode()) <= 200
    assert Path(filename).name == filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [("../../etc/passwd", "passwd"), ("C:\\evil\\x.exe", "x.exe"), ("..", "id"),
     ("a\x00b\nc", "a_b_c"), ("weights.pt", "weights.pt"), ("", "id")],
)  # fmt: skip
def test_names_that_look_like_paths_stay_in_the_chosen_directory(name: str, expected: str) -> None:
    assert safe_filename(name, "id") == expected


@given(st.text(max_size=60))
def test_guessed_content_types_pass_the_server_schema(filename: str) -> None:
    ArtifactIn(name="x", size=0, sha256="0" * 64, content_type=guess_content_type(filename))
