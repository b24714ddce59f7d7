"""A sweep (P9): N runs logging at once at the SDK's pace into one server, side by side with
MLflow. Each run posts a packed batch (``application/x-safeboard-columns``, what the SDK
sends) of ``--keys`` metrics every ``--pace`` seconds with its own API key, one kept-alive
connection per run, one request in flight per run (as the SDK's sender thread).

Prints the acknowledgement latency (p50, p99, max), errors by status, the points stored
(counted in the database afterwards: exactly once) against those acknowledged, the server's
CPU seconds per second and peak RSS, and the load generator's own CPU (it shares the cores).

    python3 bench/sweep.py --quick                      # 200 runs, 30 s, SQLite and MLflow
    python3 bench/sweep.py --runs 100 --only safeboard
    python3 bench/sweep.py --database postgres --replicas 2 --only safeboard
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from procs import MemorySampler, Server, tree_pids
from profiling import Profiler, top_frames
from run import _ca, say, start_mlflow, start_safeboard
from sweep_pg import postgres_cluster

from safeboard import wire

CLIENT_PROCESSES = 2  # the runs are spread over this many generator processes


@dataclass(frozen=True)
class Target:
    """One server as a generator process sees it (picklable)."""

    kind: str  # "safeboard" or "mlflow"
    url: str
    ca_file: str | None


@dataclass(frozen=True)
class RunSpec:
    target: Target
    run_id: str
    auth: str | None  # the Authorization header of this run's own credential


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent_points: int = 0
    acked_points: int = 0
    cpu_s: float = 0.0


def _body(spec: RunSpec, keys: list[str], step: int, points: int) -> bytes:
    now = time.time()
    if spec.target.kind == "safeboard":
        steps = np.arange(step, step + points, dtype=np.int64)
        times = now + np.arange(points) * 1e-3
        columns = {k: (steps, times, np.random.default_rng(step).random(points)) for k in keys}
        return wire.pack_arrays(secrets.token_hex(12), columns)
    metrics = [
        {"key": k, "value": random.random(), "timestamp": int(now * 1000), "step": step + i}  # noqa: S311
        for k in keys
        for i in range(points)
    ]
    return json.dumps({"run_id": spec.run_id, "metrics": metrics}).encode()


def _client(spec: RunSpec, ssl_ctx: Any) -> httpx.AsyncClient:
    media = wire.MEDIA_TYPE if spec.target.kind == "safeboard" else "application/json"
    headers = {"Content-Type": media, "User-Agent": "safeboard-bench"}
    if spec.auth:
        headers["Authorization"] = spec.auth
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(
        base_url=spec.target.url, verify=ssl_ctx, headers=headers, limits=limits,
        timeout=httpx.Timeout(60.0, connect=30.0), trust_env=False,
    )  # fmt: skip


def _path(spec: RunSpec) -> str:
    if spec.target.kind == "safeboard":
        return f"/api/v1/runs/{spec.run_id}/metrics"
    return "/api/2.0/mlflow/runs/log-batch"


async def _one_run(
    spec: RunSpec, client: httpx.AsyncClient, args: dict[str, Any], began: float, out: Outcome
) -> None:
    keys = [f"metric_{i}" for i in range(args["keys"])]
    points, pace, end = args["points"], args["pace"], began + args["duration"]
    due = began + random.random() * pace  # noqa: S311  (runs start spread over one pace)
    step = 1  # step 0: the untimed first batch
    while due < end:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        # A run behind its pace sends what it logged meanwhile as one batch, as the SDK's
        # sender does: the points logged stay the same, the requests fewer.
        late = int((time.perf_counter() - due) // pace)
        n = points * (1 + late)
        due += pace * late
        body = _body(spec, keys, step, n)
        sent = time.perf_counter()
        out.sent_points += len(keys) * n
        try:
            response = await client.post(_path(spec), content=body)
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        if status == "200":
            out.latencies.append(time.perf_counter() - sent)
            out.acked_points += len(keys) * n
            step += n
        else:
            out.errors[status] += 1
        due += pace  # the next batch is due a pace later (at once if this one was late)


async def _warm(spec: RunSpec, client: httpx.AsyncClient, keys: int, out: Outcome) -> None:
    """One batch before the clock starts: the connection's TLS handshake, first plans."""
    names = [f"metric_{i}" for i in range(keys)]
    try:
        response = await client.post(_path(spec), content=_body(spec, names, 0, 1))
        status = str(response.status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    out.sent_points += keys
    if status == "200":
        out.acked_points += keys
    else:
        out.errors[f"warm-up {status}"] += 1


def _generator(specs: list[RunSpec], args: dict[str, Any], start: Any, results: Any) -> None:
    async def main() -> list[Outcome]:
        outcomes = [Outcome() for _ in specs]
        # Each replica has its own CA (its own data directory): one context per CA file.
        contexts = {s.target.ca_file: _ca(s.target.ca_file) if s.target.ca_file else True
                    for s in specs}  # fmt: skip
        clients = [_client(s, contexts[s.target.ca_file]) for s in specs]
        gate = asyncio.Semaphore(8)

        async def warm(i: int) -> None:
            async with gate:
                await _warm(specs[i], clients[i], args["keys"], outcomes[i])

        await asyncio.gather(*(warm(i) for i in range(len(specs))))
        start.wait(600)  # every generator warmed up: go
        cpu[0] = time.process_time()
        began = time.perf_counter()
        await asyncio.gather(
            *(
                _one_run(s, c, args, began, o)
                for s, c, o in zip(specs, clients, outcomes, strict=True)
            )
        )
        for client in clients:
            await client.aclose()
        return outcomes

    cpu = [0.0]  # this process's CPU when the clock starts
    outcomes = asyncio.run(main())
    total = Outcome(cpu_s=time.process_time() - cpu[0])
    for o in outcomes:
        total.latencies += o.latencies
        total.errors.update(o.errors)
        total.sent_points += o.sent_points
        total.acked_points += o.acked_points
    results.put(total)


def _cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def drive(specs: list[RunSpec], args: dict[str, Any], servers: list[Server]) -> dict[str, Any]:
    """Run the sweep; the servers' CPU and peak memory measured meanwhile."""
    ctx = mp.get_context("spawn")
    groups = [specs[i :: args["procs"]] for i in range(args["procs"])]
    start, results = ctx.Barrier(len(groups) + 1), ctx.Queue()
    procs = [ctx.Process(target=_generator, args=(g, args, start, results)) for g in groups]
    for proc in procs:
        proc.start()
    with ExitStack() as stack:
        samplers = [stack.enter_context(MemorySampler(s.pid)) for s in servers]
        start.wait(600)
        cpu_before = [_cpu_seconds(s.pid) for s in servers]
        began = time.monotonic()
        outcomes = [results.get(timeout=args["duration"] + 300) for _ in procs]
        elapsed = time.monotonic() - began
        cpu = [
            (_cpu_seconds(s.pid) - b) / elapsed for s, b in zip(servers, cpu_before, strict=True)
        ]
    for proc in procs:
        proc.join(10)
    latencies = sorted(lat for o in outcomes for lat in o.latencies)
    errors: Counter[str] = Counter()
    for o in outcomes:
        errors.update(o.errors)

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(len(latencies) * q))]
            if latencies
            else float("nan")
        )

    return {
        "requests": len(latencies) + sum(errors.values()),
        "p50": pct(0.5),
        "p99": pct(0.99),
        "max": latencies[-1] if latencies else float("nan"),
        "errors": dict(errors),
        "sent": sum(o.sent_points for o in outcomes),
        "acked": sum(o.acked_points for o in outcomes),
        "server_cpu": cpu,
        "server_rss_mib": [s.peak.rss_mib for s in samplers],
        "generator_cpu": sum(o.cpu_s for o in outcomes) / elapsed,
        "seconds": elapsed,
    }


# --- safeboard ---------------------------------------------------------------------------


def _setup_safeboard(url: str, ca: str, admin: str, runs: int) -> list[tuple[str, str]]:
    """A project, ``runs`` runs and a write key for each: [(run id, token)]."""
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, verify=_ca(ca), headers=headers, trust_env=False) as c:
        c.post("/api/v1/projects", json={"name": "sweep"})
        made = []
        for i in range(runs):
            run = c.post("/api/v1/projects/sweep/runs", json={})
            key = c.post("/api/v1/keys", json={"name": f"sweep-{i}", "scope": "write"})
            run.raise_for_status()
            key.raise_for_status()
            made.append((run.json()["id"], key.json()["token"]))
        return made


def _stored_safeboard(database_url: str) -> int:
    import sqlalchemy as sa  # noqa: PLC0415  (the parent alone reads the database)

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT COALESCE(SUM(count), 0) FROM metric_chunks")).scalar()
                or 0
            )
    finally:
        engine.dispose()


@contextmanager
def _replicas(
    work: Path, command: list[str], database_url: str | None, n: int
) -> Iterator[list[tuple[Server, Any]]]:
    started: list[tuple[Server, Any]] = []
    env = {"SAFEBOARD__DATABASE__URL": database_url} if database_url else {}
    try:
        for i in range(n):
            home = work / f"replica-{i}"
            home.mkdir()
            started.append(start_safeboard(home, command, env))
            say(f"safeboard replica {i} at {started[-1][0].url} (pid {started[-1][0].pid})")
        yield started
    finally:
        for server, _ in started:
            server.stop()


def bench_safeboard(
    work: Path, args: argparse.Namespace, database_url: str | None
) -> dict[str, Any]:
    command = shlex.split(args.safeboard)
    with _replicas(work, command, database_url, args.replicas) as replicas:
        servers = [s for s, _ in replicas]
        last = replicas[-1][1]  # its discovery key is the admin's current one
        admin = last.auth_header.split(" ", 1)[1]
        made = _setup_safeboard(last.url, last.ca_file, admin, args.runs)
        targets = [Target("safeboard", e.url, e.ca_file) for _, e in replicas]
        specs = [
            RunSpec(targets[i % len(targets)], run_id, f"Bearer {token}")
            for i, (run_id, token) in enumerate(made)
        ]
        profiler = (
            Profiler(servers[0].pid, args.duration, work / "sweep.raw") if args.profile else None
        )
        result = drive(specs, vars(args) | {"procs": args.procs}, servers)
        if profiler is not None and profiler.running:
            raw = profiler.finish()
            if raw is not None and args.profile_out is not None:
                shutil.copyfile(raw, args.profile_out)
            if raw is not None:
                samples, own, total = top_frames(raw, 15)
                lines = [f"{samples} samples; self:"] + [f"  {n:6} {f}" for f, n in own]
                lines += ["total:"] + [f"  {n:6} {f}" for f, n in total]
                result["profile"] = "\n".join(lines)
        url = database_url or f"sqlite:///{work / 'replica-0' / 'safeboard-data' / 'safeboard.db'}"
        result["stored"] = _stored_safeboard(url)
    return result


# --- mlflow ------------------------------------------------------------------------------


def bench_mlflow(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    server, endpoint = start_mlflow(work, args.mlflow, auth=False)
    try:
        with httpx.Client(base_url=endpoint.url, trust_env=False, timeout=60) as c:
            exp = c.post("/api/2.0/mlflow/experiments/create", json={"name": "sweep"})
            exp_id = exp.json()["experiment_id"]
            ids = [
                c.post("/api/2.0/mlflow/runs/create", json={"experiment_id": exp_id}).json()["run"][
                    "info"
                ]["run_id"]
                for _ in range(args.runs)
            ]
        specs = [RunSpec(Target("mlflow", endpoint.url, None), run_id, None) for run_id in ids]
        result = drive(specs, vars(args) | {"procs": args.procs}, [server])
    finally:
        server.stop()
    import sqlite3  # noqa: PLC0415

    with sqlite3.connect(work / "mlflow" / "mlflow.db") as db:
        result["stored"] = db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    return result


# --- report ------------------------------------------------------------------------------


def _row(name: str, r: dict[str, Any]) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
    once = (
        "exactly once" if r["stored"] == r["acked"] else f"MISMATCH ({r['stored'] - r['acked']:+,})"
    )
    cpu = " + ".join(f"{c:.2f}" for c in r["server_cpu"])
    rss = " / ".join(f"{m:.0f}" for m in r["server_rss_mib"])
    return (
        f"| {name} | {r['requests'] / r['seconds']:,.0f} | {r['p50'] * 1000:,.0f} | "
        f"{r['p99'] * 1000:,.0f} | {r['max'] * 1000:,.0f} | {errors} | "
        f"{r['acked']:,} / {r['sent']:,} | {r['stored']:,} ({once}) | {cpu} | {rss} | "
        f"{r['generator_cpu']:.2f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.5, help="seconds between a run's batches")
    parser.add_argument("--keys", type=int, default=10, help="metrics in each batch")
    parser.add_argument("--points", type=int, default=1, help="points per metric per batch")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="30 s instead of 60")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--replicas", type=int, default=1, help="server processes (PostgreSQL)")
    parser.add_argument("--procs", type=int, default=CLIENT_PROCESSES, help="generator processes")
    parser.add_argument("--only", choices=("safeboard", "mlflow"))
    parser.add_argument("--safeboard", default=f"{sys.executable} -m safeboard")
    parser.add_argument("--mlflow", default=os.environ.get("MLFLOW_BIN") or shutil.which("mlflow"))
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the first server (if installed)"
    )
    parser.add_argument(
        "--profile-out", type=Path, help="also keep py-spy's raw stacks (collapsed) in this file"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration = 30.0
    if args.replicas > 1 and args.database != "postgres":
        parser.error("--replicas above 1 needs --database postgres")
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="safeboard-sweep-") as tmp:
        work = Path(tmp)
        if args.only != "mlflow":
            with ExitStack() as stack:
                url = None
                if args.database == "postgres":
                    url = stack.enter_context(postgres_cluster())
                say(f"safeboard: {args.runs} runs on {args.database}, {args.replicas} replica(s)")
                result = bench_safeboard(work, args, url)
                rows.append(
                    _row(f"safeboard ({args.database}, {args.replicas} replica(s))", result)
                )
                if "profile" in result:
                    notes.append("profile (server 0):\n" + result["profile"])
        if args.only != "safeboard":
            if not args.mlflow:
                notes.append("mlflow not measured: no mlflow command (--mlflow or $MLFLOW_BIN)")
            else:
                say(f"mlflow: {args.runs} runs")
                rows.append(_row("mlflow (sqlite, log-batch)", bench_mlflow(work, args)))
    print(
        f"\nSweep: {args.runs} runs x {args.keys} metrics x {args.points} point(s), a batch every "
        f"{args.pace} s per run, {args.duration:.0f} s, {args.procs} generator process(es), "
        f"{os.cpu_count()} cores\n"
    )
    print(
        "| server | req/s | ack p50 ms | ack p99 ms | ack max ms | errors | points acked / sent "
        "| stored | server CPU s/s (per replica) | peak RSS MiB | generator CPU s/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row)
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
