"""``run.log()`` never stalls the training loop (issue 13, P3): what waits in memory is
nothing the garbage collector walks, the sender packs a backlog soon (not a round later),
and every point logged reaches the spool once.

Timing bounds live in tests/e2e/test_sdk_log_stalls.py (generous) and in
bench/log_stall.py (the 1 ms figure); this checks the causes, which do not depend on the
machine's load."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import safeboard
from safeboard.sdk import batches, sender
from safeboard.sdk.sender import INLINE_POINTS, INLINE_SLICE
from safeboard.sdk.spool import RunSpool

CALLS = 200_000
KEYS = [f"metric_{k}" for k in range(10)]


def test_points_waiting_in_memory_are_not_walked_by_the_garbage_collector(
    tmp_path: Path,
) -> None:
    """A tuple holding a dict stays tracked: with the points of a round waiting (a minute's
    worth here, flush_interval=60), each full collection walked them all: stalls of 100 ms
    and more in the training loop, in whatever allocation started the collection."""
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path, quiet=True, flush_interval=60)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(CALLS):
        run.log(dict.fromkeys(KEYS, i * 0.5), step=i)
    gc.collect()
    grown = len(gc.get_objects()) - before
    run.finish(timeout=60)
    assert grown < CALLS // 20, grown  # the previous SDK: one tracked tuple per point
    spool = RunSpool(tmp_path, run.id)
    assert spool.pending_points() == CALLS * len(KEYS)
    steps = sorted({s for _, b in spool.batches() for s in _steps(b.body)})
    assert steps == list(range(CALLS))


def test_a_backlog_is_packed_within_a_round_not_at_its_end(tmp_path: Path) -> None:
    """Past PACK_BACKLOG points the sender packs every PACK_SECONDS, whatever the flush
    interval: what waits in memory stays small, as numpy columns (the previous SDK held
    every point of the round as Python objects)."""
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path, quiet=True, flush_interval=60)
    for i in range(50_000):
        run.log(dict.fromkeys(KEYS, 1.0), step=i)
    deadline = time.monotonic() + 30
    while run._queue and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not run._queue
    run.finish(timeout=60)
    assert RunSpool(tmp_path, run.id).pending_points() == 50_000 * len(KEYS)


def test_a_fast_loop_packs_its_points_itself_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop logging faster than the sender's rounds packs a slice itself now and then
    (``Sender.pack_inline``): the sender packing meanwhile made the two threads trade the
    interpreter lock thousands of times a second, each trade a possible stall of
    milliseconds. Points still reach the spool once each, in order.

    The sender's look for a backlog (every LOOK_SECONDS) is put off: on a loaded machine
    (CI at cc126e3, two workers on two cores) the loop ran slower than a slice per look
    and the sender took most slices, which says nothing about what ``log()`` does."""
    monkeypatch.setattr(sender, "LOOK_SECONDS", 60.0)
    packed_by: list[tuple[str, int]] = []
    real = batches.Packer.add_flat

    def add_flat(self: batches.Packer, flat: list[Any], native: Any = None) -> None:
        packed_by.append((threading.current_thread().name, len(flat) // 3))
        real(self, flat, native)

    monkeypatch.setattr(batches.Packer, "add_flat", add_flat)
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path, quiet=True, flush_interval=60)
    calls = 30_000
    for i in range(calls):
        run.log(dict.fromkeys(KEYS, i * 0.25), step=i)
    mine = [n for name, n in packed_by if name == threading.current_thread().name]
    run.finish(timeout=60)
    assert len(mine) >= calls // INLINE_POINTS // 2, (len(mine), len(packed_by))
    # Each such call packs a bounded slice, fewer points than wait: 256 points took 0.3
    # to 0.45 ms, and a call that long went past 0.5 ms at the machine's least hiccup.
    assert max(mine) <= INLINE_SLICE < INLINE_POINTS
    spool = RunSpool(tmp_path, run.id)
    assert spool.pending_points() == calls * len(KEYS)
    counted = Counter(s for _, b in spool.batches() for s in _steps(b.body))
    assert sorted(counted) == list(range(calls))
    assert set(counted.values()) == {len(KEYS)}  # each step once in each metric


def _steps(body: bytes) -> list[int]:
    from safeboard import wire

    packed = wire.split(body)
    counts = [n for _, n in json.loads(packed.header)["metrics"]]
    return [int(s) for steps, _, _ in wire.columns(packed.data, counts) for s in steps]


FREEZE = """
import gc, json, sys
import safeboard
before = gc.get_freeze_count()
if sys.argv[2] == "frozen":
    gc.freeze()  # the script's own (a preforking server does this)
mine = gc.get_freeze_count()
run = safeboard.init("p", mode="offline", spool_dir=sys.argv[1], quiet=True,
                     system_metrics=False)
during, walked = gc.get_freeze_count(), len(gc.get_objects())
run.finish(timeout=30)
print(json.dumps({"before": before, "mine": mine, "during": during, "walked": walked,
                  "after": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("script", ["plain", "frozen"])
def test_full_collections_in_the_loop_skip_the_objects_alive_at_init(
    tmp_path: Path, script: str
) -> None:
    """init() imports numpy, httpx and the client: tens of thousands of objects, and each
    full collection, started inside whatever log() call allocated at that moment, walked
    them all (15 to 20 ms). A run freezes what is alive at its start (gc.freeze) and gives
    it back at its end; what the script froze itself stays frozen. A fresh interpreter, as
    a training script is."""
    done = subprocess.run(
        [sys.executable, "-c", FREEZE, str(tmp_path), script],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    seen = json.loads(done.stdout)
    assert seen["before"] == 0
    assert seen["during"] > 10_000, seen  # the SDK's imports, left out of collections
    assert seen["walked"] < seen["during"] // 4, seen
    if script == "plain":
        assert seen["after"] == 0, seen  # collectable again after the last run
    else:
        assert seen["mine"] > 0
        assert seen["after"] >= seen["mine"], seen
