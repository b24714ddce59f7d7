"""Event records a block at a time, with numpy: the framing walk is the only loop in
Python; the CRC32C checks and the decoding of plain scalar events (tensorboardX's and
torch's ``add_scalar``: an Event of wall_time, step and one ``simple_value``) run on whole
columns of records. Every other record goes to :func:`events.decode_event`.

A plain scalar event is, byte for byte (``k``: the step's varint length, ``t``: the
tag's length, both under 128 for the summary lengths to fit one byte)::

    09 <wall_time: 8> 10 <step: k> 2a <t+9> 0a <t+7> 0a <t> <tag: t> 15 <value: 4>
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from safeboard.eventfiles import accel

if TYPE_CHECKING:
    from types import ModuleType

    from safeboard.eventfiles.records import Block

__all__ = ["Scalars", "crc32c_rows", "distinct", "gather", "plain_scalars"]

_POLY = 0x82F63B78  # CRC32C, reflected
_MASK_DELTA = 0xA282EAD8


def _table() -> npt.NDArray[np.uint32]:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


def _table16(table: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """The table for two bytes at once (the low byte first): entry ``w`` is the CRC
    register after the bytes of ``w`` from a zero register."""
    word = np.arange(1 << 16, dtype=np.uint32)
    low: npt.NDArray[np.uint32] = table[word & 0xFF]
    high: npt.NDArray[np.uint32] = table[(low ^ (word >> 8)) & 0xFF]
    both: npt.NDArray[np.uint32] = np.right_shift(low, np.uint32(8)) ^ high
    return both


_TABLE = _table()
_TABLE16 = _table16(_TABLE)  # 256 KiB: half the steps of the byte table, 2x faster here


def gather(
    array: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], width: int
) -> npt.NDArray[np.uint8]:
    """The ``width`` bytes at each of ``starts``, as an (n, width) matrix: a row copied
    at a time from a sliding-window view, with no (n, width) matrix of indexes."""
    if not starts.size or array.size < width:
        return np.zeros((0, width), np.uint8)
    return np.lib.stride_tricks.sliding_window_view(array, width)[starts]


def distinct(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The distinct values, ascending: counted (no sort) while they are small, as record
    lengths mostly are."""
    if not values.size:
        return values
    if int(values.max()) < 1 << 16 and int(values.min()) >= 0:
        return np.flatnonzero(np.bincount(values))
    return np.unique(values)


def crc32c_rows(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """The masked CRC32C of each row of an (n, length) byte matrix: two bytes a step
    (a 65,536-entry table), on contiguous columns of 16-bit words, in place."""
    n, length = rows.shape
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    even = length & ~1
    words = np.ascontiguousarray(rows[:, :even]).view("<u2").T.copy()  # a word column each
    index = np.empty(n, dtype=np.uint32)
    for word in words:
        np.bitwise_xor(crc, word, out=index)
        np.bitwise_and(index, 0xFFFF, out=index)
        np.right_shift(crc, 16, out=crc)
        crc ^= _TABLE16.take(index)
    if length & 1:
        crc = _TABLE[(crc ^ rows[:, -1]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    masked = ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)
    return masked.astype(np.uint32)


@dataclass
class Scalars:
    """The plain scalar events of a block: which records (``found``, a mask over the
    block's records) and, for those in order, their tag, step, wall time and value."""

    found: npt.NDArray[np.bool_]
    index: npt.NDArray[np.int64]  # record index within the block, ascending
    tags: list[str]
    tag_of: npt.NDArray[np.int64]  # into ``tags``
    steps: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]


def plain_scalars(block: Block, first: int = 0, stop: int | None = None) -> Scalars:
    """Find and decode the plain scalar events among the block's records ``first`` to
    ``stop`` (indexes into the block, as ``Scalars.index`` and ``found`` are)."""
    n = len(block)
    stop = n if stop is None else stop
    if accel.SCAN is not None:
        return _plain_native(block, first, stop, accel.SCAN)
    found = np.zeros(n, dtype=bool)
    parts: list[_Part] = []
    span = block.lengths[first:stop]
    for length in distinct(span[(span >= 22) & (span <= 150)]):
        which, all_rows = block.rows(int(length))
        inside = (which >= first) & (which < stop)
        group, rows = which[inside], all_rows[inside]
        # the step's varint length: the first byte from position 10 under 0x80
        ends = rows[:, 10:20] < 0x80
        k = np.argmax(ends, axis=1) + 1
        k[~ends.any(axis=1)] = 0
        for size in distinct(k[k > 0]):
            part = _decoded(rows, group, int(length), int(size), k == size)
            if part is not None:
                found[part[0]] = True
                parts.append(part)
    return _joined(found, parts)


MAX_TAGS = 4096  # distinct tags a block's C decoding keeps; the records of more go one by one


def _plain_native(block: Block, first: int, stop: int, scan: ModuleType) -> Scalars:
    starts = np.ascontiguousarray(block.starts, dtype=np.int64)
    lengths = np.ascontiguousarray(block.lengths, dtype=np.int64)
    found, index, tags, tag_of, steps, times, values = scan.plain(
        block.data, starts, lengths, first, stop, MAX_TAGS
    )
    return Scalars(
        np.frombuffer(found, dtype=bool), np.frombuffer(index, dtype=np.int64),
        [name.decode("utf-8", "replace") for name in tags],
        np.frombuffer(tag_of, dtype=np.int64), np.frombuffer(steps, dtype=np.int64),
        np.frombuffer(times, dtype=np.float64), np.frombuffer(values, dtype=np.float64),
    )  # fmt: skip


_Part = tuple[
    npt.NDArray[np.int64], list[bytes], npt.NDArray[np.int64], npt.NDArray[np.int64],
    npt.NDArray[np.float64], npt.NDArray[np.float64],
]  # fmt: skip


def _decoded(
    rows: npt.NDArray[np.uint8], group: npt.NDArray[np.int64], length: int, size: int,
    chosen: npt.NDArray[np.bool_],
) -> _Part | None:  # fmt: skip
    """The rows of one layout (step varint of ``size`` bytes) that are plain scalars."""
    t = length - 21 - size
    if t < 1 or t > 118:  # summary lengths of one byte each
        return None
    pick = np.flatnonzero(chosen)
    sub = rows if pick.size == rows.shape[0] else rows[pick]  # mostly all: no copy
    ok = (
        (sub[:, 0] == 0x09) & (sub[:, 9] == 0x10) & (sub[:, 10 + size] == 0x2A)
        & (sub[:, 11 + size] == t + 9) & (sub[:, 12 + size] == 0x0A)
        & (sub[:, 13 + size] == t + 7) & (sub[:, 14 + size] == 0x0A)
        & (sub[:, 15 + size] == t) & (sub[:, 16 + size + t] == 0x15)
    )  # fmt: skip
    if size == 10:
        ok &= sub[:, 19] <= 1  # a varint of 10 bytes carries one bit in its last
    good = sub if bool(ok.all()) else sub[ok]
    if not good.size:
        return None
    step = np.zeros(good.shape[0], dtype=np.uint64)
    for j in range(size):
        step |= (good[:, 10 + j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    names = good[:, 16 + size : 16 + size + t]
    unique, tag_of = _distinct_rows(names)
    wall = np.ascontiguousarray(good[:, 1:9]).view("<f8")[:, 0]
    value = np.ascontiguousarray(good[:, 17 + size + t : 21 + size + t]).view("<f4")[:, 0]
    records = group[pick[ok]]
    return (records, [bytes(u) for u in unique], tag_of.reshape(-1), step.view(np.int64),
            wall, value.astype(np.float64))  # fmt: skip


def _distinct_rows(
    names: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The distinct rows of a byte matrix and each row's index among them: through a
    64-bit hash of each row (a sort of n integers, not of n rows), checked row by row;
    rows all alike (one tag of this length, the common case) are seen at once."""
    if not names.shape[0] or bool((names == names[0]).all()):
        return names[:1], np.zeros(names.shape[0], dtype=np.int64)
    hashes = np.zeros(names.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in np.ascontiguousarray(names.T):
            hashes = hashes * np.uint64(1099511628211) + column + np.uint64(1)
    first, inverse = _few_distinct(hashes)
    unique = names[first]
    if not (names == unique[inverse]).all():  # two tags of one hash: never seen, but exact
        unique, inverse = np.unique(names, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1).astype(np.int64)


def _few_distinct(
    hashes: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The first index of each distinct value and each value's number among them: one
    comparison of the whole column per distinct value (a few tags), else a sort."""
    remaining = np.ones(hashes.size, dtype=bool)
    inverse = np.zeros(hashes.size, dtype=np.int64)
    firsts: list[int] = []
    while remaining.any():
        if len(firsts) == 32:
            _, first, sorted_inverse = np.unique(hashes, return_index=True, return_inverse=True)
            return first.astype(np.int64), sorted_inverse.reshape(-1).astype(np.int64)
        at = int(np.argmax(remaining))
        same = hashes == hashes[at]
        inverse[same] = len(firsts)
        firsts.append(at)
        remaining &= ~same
    return np.array(firsts, dtype=np.int64), inverse


def _joined(found: npt.NDArray[np.bool_], parts: list[_Part]) -> Scalars:
    tags: dict[bytes, int] = {}
    index, tag_of, steps, times, values = [], [], [], [], []
    for records, names, local, step, wall, value in parts:
        ids = np.array([tags.setdefault(name, len(tags)) for name in names], dtype=np.int64)
        index.append(records)
        tag_of.append(ids[local] if ids.size else local)
        steps.append(step)
        times.append(wall)
        values.append(value)
    if not index:
        empty = np.zeros(0, dtype=np.int64)
        return Scalars(found, empty, [], empty, empty, np.zeros(0), np.zeros(0))
    records = np.concatenate(index)
    order = _ascending(records, found.size)
    return Scalars(
        found, records[order],
        [name.decode("utf-8", "replace") for name in tags],
        np.concatenate(tag_of)[order], np.concatenate(steps)[order],
        np.concatenate(times)[order], np.concatenate(values)[order],
    )  # fmt: skip


def _ascending(records: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """The order that sorts ``records`` (distinct indexes below ``n``): by placing each
    at its index, no sort."""
    slot = np.full(n, -1, dtype=np.int64)
    slot[records] = np.arange(records.size)
    return slot[slot >= 0]
