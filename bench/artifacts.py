"""Artifact throughput: a 1 GB file uploaded to and downloaded from safeboard over HTTPS,
against a plain disk copy (``shutil.copyfile``) of the same file on the same machine, with
the server's memory sampled during both (it must stay flat: the bytes stream through).

    python bench/artifacts.py                 # 1 GB, 3 runs of each: about 2 minutes
    python bench/artifacts.py --size-mb 200 --runs 1

Starts safeboard (HTTPS, API key, SQLite, a temporary data directory) on a free port of
127.0.0.1 with the SDK's client (``safeboard.client.artifacts``: the same code as
``safeboard artifacts upload|download``), prints one table of medians and stops the
server, also on errors. Upload time includes the client's SHA-256 pass over the file and
the server's check of it; download time includes the client's check of what it wrote.
The disk copy reads and writes through the page cache like the server does (the file is
hot in it for every column: this is a measure of the software, not of the disk).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from procs import MIB, MemorySampler
from run import running, say, start_safeboard

from safeboard.client.artifacts import upload_file
from safeboard.client.downloads import download
from safeboard.client.http import ApiClient

MB = 1_000_000


@dataclass
class Phases:
    """Seconds per phase of one transfer, from the progress callback."""

    started: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)
    last: str | None = None

    def __call__(self, phase: str, _done: int, _total: int) -> None:
        if phase != self.last:
            now = time.perf_counter()
            if self.last is not None:
                self.marks[self.last] = now - self.marks.pop(f"{self.last}-start")
            self.marks[f"{phase}-start"] = now
            self.last = phase

    def close(self) -> dict[str, float]:
        if self.last is not None:
            start = self.marks.pop(f"{self.last}-start")
            self.marks[self.last] = time.perf_counter() - start
        return self.marks


def make_file(path: Path, size: int) -> None:
    """Random bytes (a 64 MiB random block, repeated): nothing on the way compresses it."""
    block = os.urandom(min(size, 64 * MIB))
    with path.open("wb") as handle:
        left = size
        while left:
            handle.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def disk_copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(source, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())  # the server makes its copy durable too
    took = time.perf_counter() - started
    target.unlink()
    return took


def report(  # noqa: PLR0917  (one table from everything measured)
    size: int,
    args: argparse.Namespace,
    copies: list[float],
    ups: list[float],
    downs: list[float],
    up_phases: list[dict[str, float]],
    down_phases: list[dict[str, float]],
    memory: tuple[int, int, int, int],
) -> None:
    """Print the table: medians, and the server's RSS idle, at peaks and after."""

    def rate(seconds: list[float]) -> str:
        return f"{size / statistics.median(seconds) / MB:,.0f} MB/s"

    def phase(runs: list[dict[str, float]], name: str) -> str:
        spent = [r.get(name, 0.0) for r in runs]
        return f"{statistics.median(spent):.2f} s"

    rows = [
        ("file", f"{size / MB:,.0f} MB, {args.runs} runs, medians", "",
         f"{args.chunk_mb} MiB/request"),
        ("disk copy (shutil.copyfile + fsync)", rate(copies), "", ""),
        ("upload over HTTPS, end to end", rate(ups),
         f"hash {phase(up_phases, 'hash')}", f"send {phase(up_phases, 'upload')}"),
        ("download over HTTPS, end to end", rate(downs),
         f"receive {phase(down_phases, 'download')}", f"check {phase(down_phases, 'verify')}"),
        ("server RSS idle", f"{memory[0] / MIB:.0f} MiB", "", ""),
        ("server RSS peak during uploads", f"{memory[1] / MIB:.0f} MiB", "", ""),
        ("server RSS peak during downloads", f"{memory[2] / MIB:.0f} MiB", "", ""),
        ("server RSS after", f"{memory[3] / MIB:.0f} MiB", "", ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for row in rows:
        print(f"{row[0]:<{width}}  {row[1]:>26}  {row[2]:>14}  {row[3]:>14}".rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="file size (MB, 10^6 bytes)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measure (median)")
    parser.add_argument(
        "--chunk-mb",
        type=int,
        default=64,
        help="bytes per upload request (MiB; the client's default: 64)",
    )
    parser.add_argument(
        "--safeboard",
        default=f"{sys.executable} -m safeboard",
        help="the safeboard command (default: this python -m safeboard)",
    )
    args = parser.parse_args()  # fmt: skip
    size = args.size_mb * MB

    with tempfile.TemporaryDirectory(prefix="sb-artifacts-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o700)
        source = work / "model.bin"
        say(f"writing a {args.size_mb} MB file")
        make_file(source, size)
        copies = [disk_copy(source, work / "copy.bin") for _ in range(args.runs)]
        say(f"disk copy: {size / statistics.median(copies) / MB:.0f} MB/s")

        with running(lambda: start_safeboard(work, shlex.split(args.safeboard))) as (server, ep):
            verify: ssl.SSLContext | bool = ep.verify()
            key = (ep.auth_header or "").removeprefix("Bearer ")
            with ApiClient(ep.url, key, verify=verify) as client:
                client.post("/api/v1/projects", json={"name": "bench"})
                run_id = client.post("/api/v1/projects/bench/runs", json={}).json()["id"]
                time.sleep(2)
                idle = server.memory()
                ups, downs, up_phases, down_phases = [], [], [], []
                up_peak = down_peak = 0
                for i in range(args.runs):
                    phases = Phases()
                    with MemorySampler(server.pid, interval=0.1) as sampler:
                        started = time.perf_counter()
                        artifact = upload_file(client, run_id, source, name=f"model-{i}.bin",
                                               kind="model", progress=phases,
                                               chunk_size=args.chunk_mb * MIB)  # fmt: skip
                        ups.append(time.perf_counter() - started)
                    up_phases.append(phases.close())
                    up_peak = max(up_peak, sampler.peak.rss)
                    assert artifact["state"] == "ready"
                    say(f"upload {i + 1}: {size / ups[-1] / MB:.0f} MB/s")
                    target = work / "downloaded.bin"
                    phases = Phases()
                    with MemorySampler(server.pid, interval=0.1) as sampler:
                        started = time.perf_counter()
                        download(client, artifact["id"], target, overwrite=True, progress=phases)
                        downs.append(time.perf_counter() - started)
                    down_phases.append(phases.close())
                    down_peak = max(down_peak, sampler.peak.rss)
                    say(f"download {i + 1}: {size / downs[-1] / MB:.0f} MB/s")
                    target.unlink()
                    client.delete(f"/api/v1/artifacts/{artifact['id']}")
                time.sleep(2)
                after = server.memory()

    report(size, args, copies, ups, downs, up_phases, down_phases,
           (idle.rss, up_peak, down_peak, after.rss))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
