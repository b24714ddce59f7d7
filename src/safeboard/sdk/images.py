"""Images for ``run.log_image``: a numpy array (HxW, HxWx1, HxWx3, HxWx4; uint8, or float
in [0, 1]), a PIL image, or a path to an image file. Arrays become PNG files, with PIL when
it is installed and otherwise with the small writer here (zlib, no filtering). numpy and
PIL are optional imports: neither is loaded unless the caller hands one of their objects.
"""

from __future__ import annotations

import importlib
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from safeboard.errors import InvalidRequest

__all__ = ["Pixels", "encode_png", "pixels_of", "png_bytes"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA
MAX_SIDE = 1 << 16


@dataclass(frozen=True)
class Pixels:
    """8-bit pixels, row after row, ``channels`` bytes each (a copy: the caller's array
    may change after ``log_image`` returns)."""

    data: bytes
    width: int
    height: int
    channels: int


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def encode_png(pixels: Pixels, level: int = 6) -> bytes:
    """A PNG of 8-bit gray, gray+alpha, RGB or RGBA pixels (filter type 0 on every row)."""
    if pixels.channels not in _COLOR_TYPE:
        raise InvalidRequest("an image has 1, 2, 3 or 4 channels")
    if not (0 < pixels.width <= MAX_SIDE and 0 < pixels.height <= MAX_SIDE):
        raise InvalidRequest(f"an image is 1 to {MAX_SIDE} pixels wide and high")
    stride = pixels.width * pixels.channels
    if len(pixels.data) != stride * pixels.height:
        raise InvalidRequest("the pixel data does not match the image's size")
    header = struct.pack(
        ">IIBBBBB", pixels.width, pixels.height, 8, _COLOR_TYPE[pixels.channels], 0, 0, 0
    )
    compressor = zlib.compressobj(level)
    parts = []
    view = memoryview(pixels.data)
    for row in range(pixels.height):
        parts.append(compressor.compress(b"\x00"))
        parts.append(compressor.compress(view[row * stride : (row + 1) * stride]))
    parts.append(compressor.flush())
    data = b"".join(parts)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _is_pil(image: Any) -> bool:
    return any(cls.__module__.startswith("PIL.") for cls in type(image).__mro__)


def pixels_of(image: Any) -> Pixels:
    """The pixels of a numpy array or a PIL image, checked and copied."""
    if _is_pil(image):
        mode = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA"}.get(image.mode, "RGBA")
        converted = image if image.mode == mode else image.convert(mode)
        width, height = converted.size
        return Pixels(converted.tobytes(), width, height, len(mode))
    if not hasattr(image, "__array_interface__"):
        raise InvalidRequest(
            "log_image takes a numpy array, a PIL image or a path to an image file, not "
            f"{type(image).__name__}"
        )
    import numpy as np  # noqa: PLC0415  (only for callers who hand an array)

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InvalidRequest(f"an image array is HxW, HxWx3 or HxWx4, not {array.shape}")
    if array.dtype == np.uint8:
        data = np.ascontiguousarray(array).tobytes()
    elif array.dtype.kind == "f":
        if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
            raise InvalidRequest("a float image array holds values in [0, 1]")
        data = (array.astype(np.float64) * 255.0 + 0.5).astype(np.uint8).tobytes()
    elif array.dtype == np.bool_:
        data = (array.astype(np.uint8) * 255).tobytes()
    else:
        raise InvalidRequest(f"an image array is uint8 or float in [0, 1], not {array.dtype}")
    channels = 1 if array.ndim == 2 else int(array.shape[2])
    height, width = int(array.shape[0]), int(array.shape[1])
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise InvalidRequest(f"an image is 1 to {MAX_SIDE} pixels a side, not {width}x{height}")
    return Pixels(data, width, height, channels)


def png_bytes(pixels: Pixels) -> bytes:
    """PNG with PIL when it is installed (faster, smaller), else with :func:`encode_png`."""
    try:
        image_module: Any = importlib.import_module("PIL.Image")  # optional
    except ImportError:
        return encode_png(pixels)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.channels]
    image = image_module.frombytes(mode, (pixels.width, pixels.height), pixels.data)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
