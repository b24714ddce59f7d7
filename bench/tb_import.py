"""P7: one TensorBoard event file of 1,000,000 scalars (4 tags), side by side in one run:

- safeboard: ``safeboard import tensorboard`` (a subprocess, as a user runs it) into a
  safeboard server (``--tls``, API key, SQLite): read, CRC-checked, stored; then readable
  (the run's metric counts checked, timed apart). The command finds the server through
  its data directory, as a user's on the same machine does, and so hands the file to the
  server through its import socket in that 0700 directory (docs/security.md, S19): the
  server reads and stores it. A fresh server for every run (its first import).
- TensorBoard's ``EventAccumulator`` (Python, ``size_guidance`` 0: every scalar kept).
- TensorBoard's Rust ``tensorboard-data-server`` (spawn, load once with every sample
  kept, ``ReadScalars`` over gRPC until all points are there), with its default (records
  checksummed only when they fail to parse) and with ``--checksum``.

The file is written here with the bytes tensorboardX writes for ``add_scalar`` (an Event
with wall_time, step and one ``simple_value``; checked against TensorBoard's protos).

    python bench/tb_import.py            # 1,000,000 scalars, 3 runs each: about 2 minutes
    python bench/tb_import.py --quick    # 100,000 scalars: a smoke test, not figures

Each reader runs ``--repeats`` times (3), in turn; the table gives the medians.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import start_safeboard
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2

import safeboard
from safeboard.client import Client
from safeboard.client.http import ApiClient
from safeboard.eventfiles import accel, masked_crc32c

TAGS = ("loss", "accuracy", "lr", "grad_norm")
TARGET = 2.0  # P7: at least twice the data server's rate
SB = "safeboard import tensorboard (read, CRC-checked, stored)"
DS_CHECKED = "tensorboard-data-server, --checksum (spawn, load, ReadScalars)"
DS_DEFAULT = "tensorboard-data-server, default (CRC only on parse failure)"
EA = "TensorBoard EventAccumulator (size_guidance 0)"
NAMES = (SB, DS_CHECKED, DS_DEFAULT, EA)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))  # fmt: skip


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    tag_bytes = tag.encode()
    value_msg = b"\x0a" + _varint(len(tag_bytes)) + tag_bytes + b"\x15" + struct.pack("<f", value)
    summary = b"\x0a" + _varint(len(value_msg)) + value_msg
    return (b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)
            + b"\x2a" + _varint(len(summary)) + summary)  # fmt: skip


def write_file(logdir: Path, points: int) -> Path:
    run = logdir / "run"
    run.mkdir(parents=True)
    path = run / "events.out.tfevents.1700000000.bench"
    first = b"\x09" + struct.pack("<d", 1.7e9) + b"\x1a\x0dbrain.Event:2"
    with path.open("wb") as out:
        out.write(_frame(first))
        chunk = []
        for i in range(points):
            step = i // len(TAGS)
            chunk.append(
                _frame(scalar_event(TAGS[i % len(TAGS)], 1.0 / (1 + i), step, 1.7e9 + step))
            )
            if len(chunk) == 10_000:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))
    checked = event_pb2.Event.FromString(scalar_event("loss", 0.5, 7, 1.0))  # TensorBoard's
    assert checked.step == 7
    assert checked.summary.value[0].simple_value == 0.5
    return path


def compile_safeboard() -> None:
    """Write safeboard's bytecode before any timing, as an installed package has it (pip
    compiles at install). Run from a checkout with ``PYTHONDONTWRITEBYTECODE=1`` (set on
    the machines these figures come from), the command compiled the 70-odd modules it
    imports at every start: about 0.1 s of CPU that a user's import never pays."""
    compileall.compile_dir(Path(safeboard.__file__).parent, quiet=1)


def bench_safeboard(work: Path, logdir: Path, points: int) -> tuple[float, float]:
    work.mkdir()
    server, endpoint = start_safeboard(work, [sys.executable, "-m", "safeboard"])
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
        env["SAFEBOARD_DATA_DIR"] = str(work / "safeboard-data")
        env["SAFEBOARD_SPOOL_DIR"] = str(work / "spool")
        env["SAFEBOARD_CONFIG_DIR"] = str(work / "cfg")
        # P7 measures the import (read, checked, stored, readable): the copy of the event
        # file kept for the TensorBoard button (a thread beside the reading) is left out.
        cmd = [sys.executable, "-m", "safeboard", "import", "tensorboard", str(logdir), "-p", "tb",
               "--no-keep-event-files"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"safeboard import failed: {done.stderr}")
        key = (endpoint.auth_header or "").removeprefix("Bearer ")
        with Client(ApiClient(endpoint.url, key, verify=endpoint.verify())) as client:
            run_id = done.stdout.split("(")[1].split(")")[0]
            started = time.perf_counter()
            run = client.run(run_id)
            stored = sum(m.count for m in run.metrics)
            for tag in TAGS:
                client.history(run_id, tag)
            read = time.perf_counter() - started
        if stored != points:
            raise SystemExit(f"safeboard stored {stored} points, not {points}")
        return elapsed, read
    finally:
        server.stop()


def bench_accumulator(path: Path, points: int) -> float:
    started = time.perf_counter()
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    got = sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])
    elapsed = time.perf_counter() - started
    if got != points:
        raise SystemExit(f"EventAccumulator read {got} points, not {points}")
    return elapsed


def bench_data_server(logdir: Path, points: int, *, checksum: bool) -> float | None:
    try:
        import grpc  # noqa: PLC0415  (optional: the data server comes with tensorboard)
        import tensorboard_data_server  # noqa: PLC0415
        from tensorboard.data.proto import data_provider_pb2 as pb  # noqa: PLC0415
        from tensorboard.data.proto import data_provider_pb2_grpc as rpc  # noqa: PLC0415
    except ImportError:
        return None
    binary = tensorboard_data_server.server_binary()
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        args = [binary, "--logdir", str(logdir), "--port", "0", "--port-file", str(port_file)]
        args += ["--reload", "once", "--samples-per-plugin", "scalars=all", "--die-after-stdin"]
        args += ["--checksum"] if checksum else []
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            while not port_file.exists() or not port_file.read_text().endswith("\n"):
                time.sleep(0.005)
            address = f"localhost:{int(port_file.read_text())}"
            options = [("grpc.max_receive_message_length", 1 << 30)]
            channel = grpc.insecure_channel(address, options=options)
            stub = rpc.TensorBoardDataProviderStub(channel)
            request = pb.ReadScalarsRequest(
                plugin_filter=pb.PluginFilter(plugin_name="scalars"),
                downsample=pb.Downsample(num_points=points), run_tag_filter=pb.RunTagFilter(),
            )  # fmt: skip
            while True:
                answer = stub.ReadScalars(request)
                got = sum(len(t.data.step) for r in answer.runs for t in r.tags)
                if got >= points:
                    break
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            channel.close()
        finally:
            proc.kill()
            proc.wait()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 scalars (smoke test)")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each reader (median)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-accumulator", action="store_true",
                        help="leave out EventAccumulator (minutes at 10M scalars)")  # fmt: skip
    args = parser.parse_args()
    points = args.points or (100_000 if args.quick else 1_000_000)
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    reads: list[float] = []
    compile_safeboard()
    with tempfile.TemporaryDirectory(prefix="tb-import-bench-") as tmp:
        work = Path(tmp)
        logdir = work / "logs"
        started = time.perf_counter()
        path = write_file(logdir, points)
        print(f"event file: {points:,} scalars, {path.stat().st_size / 1e6:.1f} MB, written in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
        for repeat in range(args.repeats):  # the readers in turn, so that load hits them alike
            sb, read = bench_safeboard(work / f"sb-{repeat}", logdir, points)
            times[SB].append(sb)
            reads.append(read)
            for name, checksum in ((DS_CHECKED, True), (DS_DEFAULT, False)):
                got = bench_data_server(logdir, points, checksum=checksum)
                if got is not None:
                    times[name].append(got)
            if not args.no_accumulator:
                times[EA].append(bench_accumulator(path, points))
            print(f"run {repeat + 1}: " + ", ".join(f"{n.split(' (')[0]} {v[-1]:.2f} s"
                  for n, v in times.items() if v), file=sys.stderr)  # fmt: skip
    medians = {name: statistics.median(v) if v else None for name, v in times.items()}
    sb = medians[SB]
    assert sb is not None
    print(f"\n{points:,} scalars, one file, {os.cpu_count()} cores, "
          f"medians of {args.repeats} runs; safeboard's reader: {accel.describe()}\n")  # fmt: skip
    print(f"| {'reader':<66} | {'seconds':>8} | {'points/s':>10} | {'safeboard vs it':>15} |")
    print(f"|{'-' * 68}|{'-' * 10}:|{'-' * 11}:|{'-' * 16}:|")
    for name, seconds in medians.items():
        if seconds is None:
            print(f"| {name:<66} | {'n/a':>8} | {'n/a':>10} | {'':>15} |")
            continue
        vs = f"{seconds / sb:.2f}x" if name != SB else "-"
        print(f"| {name:<66} | {seconds:8.2f} | {points / seconds:10,.0f} | {vs:>15} |")
    read = statistics.median(reads)
    print(f"\nreadable after the import (metric counts, 4 histories): {read * 1000:.0f} ms")
    for label, name in (("default", DS_DEFAULT), ("--checksum", DS_CHECKED)):
        other = medians[name]
        if other is not None:
            met = "met" if other / sb >= TARGET else "NOT met"
            print(
                f"P7 (>= {TARGET:.0f}x the data server's rate, {label}): {other / sb:.2f}x, {met}"
            )
    if args.json:
        figures = {"points": points, "seconds": medians, "runs": times, "read_s": read}
        args.json.write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
