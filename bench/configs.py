"""Server memory with configs at their bounds (P4, S17; issue 10): a project of 10,000
runs whose config and system information are each at the bounds of safeboard/documents.py
(256 KiB of JSON, 32 levels, 64 KiB strings, 9,000 keys), 100 tags of 10,000 characters
in all and 20,000 characters of notes, read through every list and page.

    python bench/configs.py               # about 5 minutes on 2 cores (seeding: most of it)
    python bench/configs.py --runs 1000   # quicker

Starts ``safeboard server`` on a free port of 127.0.0.1 with a temporary data directory
(SQLite), seeds the runs straight into its database, signs in with the startup link, then
fetches each list and page three times and prints the median time and the server's
memory, sampled every 5 ms meanwhile: the highest resident (VmRSS) and anonymous (RssAnon:
the heap, without database pages that SQLite maps) memory, and VmHWM, the peak resident
memory since the requests began. P4 asks for at most
150 MiB resident. Stops the server at the end, also on errors. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seeding import server  # noqa: E402

from safeboard.cli.local import open_local  # noqa: E402
from safeboard.documents import (  # noqa: E402
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_KEYS,
    MAX_NOTES_CHARS,
    MAX_STRING_CHARS,
    MAX_TAGS,
    MAX_TAGS_CHARS,
    document_problem,
    encoded_size,
    tags_problem,
)
from safeboard.ids import new_id  # noqa: E402
from safeboard.projects.service import ProjectService  # noqa: E402
from safeboard.runs.models import RunRow, RunTagRow  # noqa: E402
from safeboard.runs.repository import activity as run_activity  # noqa: E402
from safeboard.storage import open_database  # noqa: E402

P4_MIB = 150
REPEATS = 3
BATCH = 200


def at_the_bounds(i: int) -> dict[str, Any]:
    """A config as large as the bounds allow: nesting, keys, long strings, total size."""
    nested: Any = {"leaf": i}
    for level in range(MAX_DEPTH - 2):
        nested = {f"level{level}": nested}
    config: dict[str, Any] = {
        "lr": 10 ** -(1 + i % 5),
        "opt": {"name": ["sgd", "adam", "adamw"][i % 3], "beta": 0.9},
        "deep": nested,
        "grid": {f"k{j}": j for j in range(MAX_KEYS - 1_000)},
        "prompt": "p" * MAX_STRING_CHARS,
    }
    room = MAX_DOCUMENT_BYTES - encoded_size(config) - len(',"fill":""')
    config["fill"] = "f" * min(room, MAX_STRING_CHARS)
    while document_problem(config) is not None:  # (fill shrinks until it fits)
        config["fill"] = config["fill"][:-64]
    return config


def seed(data_dir: Path, runs: int) -> list[str]:
    """``runs`` runs at the bounds, written in batches straight into the database."""
    config = at_the_bounds(0)
    system = {f"s{j}": "s" * MAX_STRING_CHARS for j in range(3)}
    system["fill"] = "f" * (MAX_DOCUMENT_BYTES - encoded_size(system) - 20)
    assert document_problem(config) is None
    assert document_problem(system, "system") is None
    print(f"config: {encoded_size(config):,} bytes, system: {encoded_size(system):,} bytes")
    tags = {f"tag{j:03d}": "t" * (MAX_TAGS_CHARS // MAX_TAGS - 6) for j in range(MAX_TAGS)}
    assert tags_problem(tags) is None
    with open_local(data_dir) as local:
        admin = local.principal(local.users.list_all()[0].username)
        engine = open_database(local.settings.database_url)
        project = ProjectService(engine, activity=run_activity).create(
            admin, "bench", "runs at the bounds"
        )
    runs_table = cast(sa.Table, RunRow.__table__)
    tags_table = cast(sa.Table, RunTagRow.__table__)
    start = datetime.now(UTC) - timedelta(days=1)
    ids: list[str] = []
    started = time.perf_counter()
    for first in range(0, runs, BATCH):
        rows, tag_rows = [], []
        for i in range(first, min(first + BATCH, runs)):
            run_id = new_id()
            ids.append(run_id)
            rows.append({
                "id": run_id, "project_id": project.id, "name": f"run-{i:05d}",
                "status": "finished", "created_at": start + timedelta(seconds=i),
                "params": config | {"lr": 10 ** -(1 + i % 5), "seed": i}, "system": system,
                "notes": "n" * MAX_NOTES_CHARS, "created_by": None,
            })  # fmt: skip
            tag_rows += [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
        with engine.begin() as conn:
            conn.execute(sa.insert(runs_table), rows)
            conn.execute(sa.insert(tags_table), tag_rows)
        done = min(first + BATCH, runs)
        if done % 1000 == 0 or done == runs:
            rate = done / (time.perf_counter() - started)
            print(f"  seeded {done:,} runs ({rate:,.0f}/s)", flush=True)
    engine.dispose()
    return ids


def server_pid(url: str) -> int:
    """The pid of the process listening on the URL's port (from /proc/net/tcp)."""
    port = urlparse(url).port
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {str(Path(fd).readlink()) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            return int(proc.name)
    raise RuntimeError(f"no process listens on port {port}")


def memory(pid: int) -> tuple[float, float, float]:
    """(VmRSS, VmHWM, RssAnon) of the process, MiB. RssAnon leaves out the pages of files
    mapped in memory: SQLite reads the database through mmap (up to 256 MiB of it)."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon"))  # type: ignore[return-value]


class Sampler(threading.Thread):
    """The highest VmRSS and RssAnon of a process while inside, read every 5 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.rss = self.peak = self.anon = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            rss, peak, anon = memory(self.pid)
            self.rss, self.peak, self.anon = max(self.rss, rss), peak, max(self.anon, anon)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.join()
        rss, self.peak, anon = memory(self.pid)
        self.rss, self.anon = max(self.rss, rss), max(self.anon, anon)


def signed_in(url: str, link: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120, headers={"Origin": url})
    token = link.split("#token=", 1)[1]
    answer = client.post("/api/v1/auth/startup", json={"token": token, "next": "/"})
    answer.raise_for_status()
    # The session counts only with its binding, which the dashboard's service worker sends.
    client.headers["X-Safeboard-Binding"] = answer.json()["binding"]
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    parser.add_argument(
        "--server-src",
        type=Path,
        default=None,
        help="Run the server from this src/ directory (e.g. an older safeboard, exported with "
        "`git archive COMMIT src | tar -x -C DIR`); seeding still uses this checkout.",
    )
    args = parser.parse_args()
    if args.server_src:
        os.environ["PYTHONPATH"] = str(args.server_src.resolve())
    with tempfile.TemporaryDirectory(prefix="safeboard-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with server(data_dir) as (url, link):
            print(f"seeding {args.runs:,} runs at the bounds ...")
            ids = seed(data_dir, args.runs)
            size = sum(f.stat().st_size for f in data_dir.glob("*.db*"))
            print(f"database: {size / 2**30:.2f} GiB")
            pid = server_pid(url)
            client = signed_in(url, link)
            html = {"Accept": "text/html"}
            compared = "&".join(f"run={run_id}" for run_id in ids[-20:])
            keys = "config_key=lr&config_key=opt.name&config_key=prompt&config_key=deep"
            requests = [
                ("project page (defaults: 3 param columns)", "/projects/bench", html),
                ("  sorted by params.lr", "/projects/bench?sort=params.lr", html),
                ("  filtered params.lr > 0.001", "/projects/bench?filter=params.lr+>+0.001", html),
                ("  columns params.prompt, params.grid.k1",
                 "/projects/bench?col=params.prompt&col=params.grid.k1", html),
                ("API list, 500 runs", "/api/v1/projects/bench/runs?limit=500", {}),
                ("API list, 500 runs, 4 config keys",
                 f"/api/v1/projects/bench/runs?limit=500&{keys}", {}),
                ("API run (whole config and system)", f"/api/v1/runs/{ids[-1]}", {}),
                ("run page", f"/runs/{ids[-1]}", html),
                ("compare page, 20 runs", f"/compare?{compared}", html),
            ]  # fmt: skip
            rss, peak, anon = memory(pid)
            print(f"\nserver before the requests: {rss:.0f} MiB resident ({anon:.0f} MiB "
                  f"anonymous), peak {peak:.0f}")  # fmt: skip
            # From here the peak counts the requests only (start-up hashed a password).
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            print(f"{'request':44} {'median':>9} {'bytes':>11} {'RSS':>7} {'HWM':>7} {'anon':>7}")
            figures: list[dict[str, Any]] = []
            top_anon = 0.0
            for label, path, headers in requests:
                times, length = [], 0
                with Sampler(pid) as sampled:
                    for _ in range(REPEATS):
                        started = time.perf_counter()
                        answer = client.get(path, headers=headers)
                        times.append((time.perf_counter() - started) * 1000)
                        answer.raise_for_status()
                        length = len(answer.content)
                rss, peak, anon = sampled.rss, sampled.peak, sampled.anon
                ms = statistics.median(times)
                print(f"{label:44} {ms:7.0f} ms {length:11,} {rss:5.0f} Mi {peak:5.0f} Mi "
                      f"{anon:5.0f} Mi")  # fmt: skip
                figures.append({
                    "request": label.strip(), "median_ms": round(ms, 1), "bytes": length,
                    "rss_peak_mib": round(rss, 1), "hwm_mib": round(peak, 1),
                    "anon_peak_mib": round(anon, 1),
                })  # fmt: skip
                top_anon = max(top_anon, anon)
            print(f"\nP4 (server resident <= {P4_MIB} MiB): peak {peak:.0f} MiB resident, of "
                  f"which at most {top_anon:.0f} MiB anonymous (the rest: database pages "
                  "mapped by SQLite's mmap, shared with the page cache)")  # fmt: skip
            if args.json:
                args.json.write_text(json.dumps({"runs": args.runs, "figures": figures}))


if __name__ == "__main__":
    main()
