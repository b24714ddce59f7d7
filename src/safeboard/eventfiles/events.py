"""The Event and Summary messages of TensorBoard's event files, decoded to what safeboard
imports: scalars (``simple_value``, and TF2's tensor with plugin "scalars"), images
(``Summary.Image``, and the "images" plugin's string tensor), text ("text" plugin),
hparams (the "hparams" plugin's session start) and histograms (``HistogramProto``, and
the "histograms" plugin's (k, 3) tensor). Everything else is skipped.

Field numbers are TensorFlow's (event.proto, summary.proto, tensor.proto) and
TensorBoard's (plugins/hparams/plugin_data.proto, google/protobuf/struct.proto).

TF2 writers give a tag's plugin metadata with its first value only: ``plugins`` (one
mapping per file) remembers each tag's plugin between calls, as TensorBoard does.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

from safeboard.eventfiles.wireformat import (
    DecodeError,
    fields,
    packed_doubles,
    packed_floats,
    packed_varints,
)

__all__ = [
    "DecodeError", "Event", "Histogram", "Hparams", "Image", "Item", "Scalar", "Text",
    "decode_event",
]  # fmt: skip

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
# TensorProto dtypes (types.proto)
_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_STRING, _DT_INT64, _DT_HALF = 1, 2, 3, 7, 9, 19
_DATA_CLASS_SCALAR = 1


@dataclass(frozen=True)
class Scalar:
    tag: str
    value: float


@dataclass(frozen=True)
class Image:
    tag: str
    encoded: bytes  # PNG, JPEG, GIF... as written: the server decides what it serves
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Text:
    tag: str
    text: str  # untrusted: shown as escaped text, never as HTML or markdown


@dataclass(frozen=True)
class Hparams:
    values: dict[str, Any]


@dataclass(frozen=True)
class Histogram:
    tag: str
    limits: list[float]  # the right edge of each bucket
    counts: list[float]
    min: float = math.nan
    max: float = math.nan
    num: float = math.nan
    sum: float = math.nan
    sum_squares: float = math.nan


Item = Scalar | Image | Text | Hparams | Histogram


@dataclass
class Event:
    wall_time: float = 0.0
    step: int = 0
    items: list[Item] = field(default_factory=list)


def _double(bits: int | bytes) -> float:
    return float(_DOUBLE.unpack(bits.to_bytes(8, "little"))[0]) if isinstance(bits, int) else 0.0


def _float(bits: int | bytes) -> float:
    return float(_FLOAT.unpack(bits.to_bytes(4, "little"))[0]) if isinstance(bits, int) else 0.0


def _text(raw: int | bytes) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""


def decode_event(data: bytes, plugins: dict[str, str]) -> Event:
    """One Event record; DecodeError when it is not one."""
    event = Event()
    for number, _, value in fields(data):
        if number == 1:
            event.wall_time = _double(value)
        elif number == 2 and isinstance(value, int):
            event.step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5 and isinstance(value, bytes):
            for _, _, raw in (f for f in fields(value) if f[0] == 1):
                if isinstance(raw, bytes):
                    item = _value(raw, plugins)
                    if item is not None:
                        event.items.append(item)
    return event


def _value(data: bytes, plugins: dict[str, str]) -> Item | None:  # noqa: PLR0912  (a branch per field)
    """One Summary.Value: tag=1, simple_value=2, image=4, histo=5, tensor=8, metadata=9."""
    tag = ""
    simple: float | None = None
    image = histo = tensor = None
    data_class = 0
    for number, _, value in fields(data):
        if number == 1:
            tag = _text(value)
        elif number == 2:
            simple = _float(value)
        elif number == 4 and isinstance(value, bytes):
            image = value
        elif number == 5 and isinstance(value, bytes):
            histo = value
        elif number == 8 and isinstance(value, bytes):
            tensor = value
        elif number == 9 and isinstance(value, bytes):
            plugin, content, data_class = _metadata(value)
            if plugin:
                plugins[tag] = plugin
            if plugin == "hparams":
                return _hparams(content)
    if simple is not None:
        return Scalar(tag, simple)
    if image is not None:
        return _image(tag, image)
    if histo is not None:
        return _histogram(tag, histo)
    if tensor is None:
        return None
    plugin = plugins.get(tag, "scalars" if data_class == _DATA_CLASS_SCALAR else "")
    return _tensor_item(tag, plugin, tensor)


def _metadata(data: bytes) -> tuple[str, bytes, int]:
    """SummaryMetadata: plugin_data=1 {plugin_name=1, content=2}, data_class=4."""
    plugin, content, data_class = "", b"", 0
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            for inner, _, part in fields(value):
                if inner == 1:
                    plugin = _text(part)
                elif inner == 2 and isinstance(part, bytes):
                    content = part
        elif number == 4 and isinstance(value, int):
            data_class = value
    return plugin, content, data_class


def _tensor_item(tag: str, plugin: str, data: bytes) -> Item | None:  # noqa: PLR0911  (a return per plugin)
    if plugin == "scalars":
        numbers = _numbers(data)
        return Scalar(tag, numbers[0]) if len(numbers) == 1 else None
    if plugin == "text":
        return Text(tag, "\n".join(s.decode("utf-8", "replace") for s in _strings(data)))
    if plugin == "images":
        strings = _strings(data)
        if len(strings) < 3:
            return None
        width, height = (int(s) if s.isdigit() else 0 for s in strings[:2])
        return Image(tag, strings[2], width, height)  # the first of the batch
    if plugin == "histograms":
        numbers = _numbers(data)
        if len(numbers) % 3:
            return None
        limits, counts = numbers[1::3], numbers[2::3]
        return Histogram(tag, limits, counts, min=numbers[0] if numbers else math.nan,
                         max=limits[-1] if limits else math.nan, num=sum(counts))  # fmt: skip
    return None


def _tensor_parts(data: bytes) -> tuple[int, bytes, list[tuple[int, int | bytes]]]:
    dtype, content, values = 0, b"", []
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 4 and isinstance(value, bytes):
            content = value
        elif number in (5, 6, 7, 8, 10, 13):
            values.append((number, value))
    return dtype, content, values


def _numbers(data: bytes) -> list[float]:
    """A numeric TensorProto's values (tensor_content, or the typed repeated fields)."""
    dtype, content, values = _tensor_parts(data)
    if content:
        code = {_DT_FLOAT: "f", _DT_DOUBLE: "d", _DT_INT32: "i", _DT_INT64: "q",
                _DT_HALF: "e"}.get(dtype)  # fmt: skip
        if code is None or len(content) % struct.calcsize(code):
            return []
        return [
            float(x)
            for x in struct.unpack(f"<{len(content) // struct.calcsize(code)}{code}", content)
        ]
    out: list[float] = []
    for number, value in values:
        if number == 5:
            out += packed_floats(value)
        elif number == 6:
            out += packed_doubles(value)
        elif number in (7, 10):
            out += [float(v - (1 << 64) if v >= 1 << 63 else v) for v in packed_varints(value)]
        elif number == 13:  # half_val: float16 bits in int32s
            out += [struct.unpack("<e", (v & 0xFFFF).to_bytes(2, "little"))[0]
                    for v in packed_varints(value)]  # fmt: skip
    return out


def _strings(data: bytes) -> list[bytes]:
    """A DT_STRING TensorProto's string_val (field 8)."""
    return [v for n, v in _tensor_parts(data)[2] if n == 8 and isinstance(v, bytes)]


def _image(tag: str, data: bytes) -> Image | None:
    """Summary.Image: height=1, width=2, colorspace=3, encoded_image_string=4."""
    height = width = 0
    encoded = b""
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, int):
            height = value
        elif number == 2 and isinstance(value, int):
            width = value
        elif number == 4 and isinstance(value, bytes):
            encoded = value
    return Image(tag, encoded, width, height) if encoded else None


def _histogram(tag: str, data: bytes) -> Histogram:
    """HistogramProto: min=1, max=2, num=3, sum=4, sum_squares=5, bucket_limit=6, bucket=7."""
    stats = dict.fromkeys(range(1, 6), math.nan)
    limits: list[float] = []
    counts: list[float] = []
    for number, _, value in fields(data):
        if 1 <= number <= 5:
            stats[number] = _double(value)
        elif number == 6:
            limits += packed_doubles(value)
        elif number == 7:
            counts += packed_doubles(value)
    return Histogram(tag, limits, counts, min=stats[1], max=stats[2], num=stats[3],
                     sum=stats[4], sum_squares=stats[5])  # fmt: skip


def _hparams(content: bytes) -> Hparams | None:
    """HParamsPluginData: session_start_info=3 {hparams=1: map<string, Value>}."""
    for number, _, value in fields(content):
        if number == 3 and isinstance(value, bytes):
            values: dict[str, Any] = {}
            for inner, _, entry in fields(value):
                if inner == 1 and isinstance(entry, bytes):
                    key, parsed = _map_entry(entry)
                    values[key] = parsed
            return Hparams(values)
    return None


def _map_entry(data: bytes) -> tuple[str, Any]:
    key, parsed = "", None
    for number, _, value in fields(data):
        if number == 1:
            key = _text(value)
        elif number == 2 and isinstance(value, bytes):
            parsed = _struct_value(value)
    return key, parsed


def _struct_value(data: bytes) -> Any:
    """google.protobuf.Value: null=1, number=2, string=3, bool=4 (struct and list: text)."""
    for number, _, value in fields(data):
        if number == 2:
            return _double(value)
        if number == 3:
            return _text(value)
        if number == 4:
            return bool(value)
    return None
