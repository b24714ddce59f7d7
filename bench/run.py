"""safeboard against MLflow's tracking server, side by side, on this machine (P1 to P4).

    python bench/run.py            # about 6 minutes on 2 cores
    python bench/run.py --quick    # under 2 minutes: shorter phases, smaller reads, no auth run

Starts safeboard (HTTPS, API key, SQLite, a temporary data directory) and MLflow (SQLite,
its default uvicorn workers, then once more with its basic-auth app), one at a time, on free
ports of 127.0.0.1, measures, prints one table and stops both servers, also on errors. MLflow
comes from ``--mlflow`` or ``$MLFLOW_BIN`` (default: ``mlflow`` on PATH); install it in a
virtualenv of its own (see bench/README.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from endpoints import Endpoint, SafeboardBodies, mlflow_run, safeboard_run
from load import LoadResult, ingest_load, small_requests
from procs import Memory, MemorySampler, Server, free_port, start_server
from profiling import Profiler, top_frames

HERE = Path(__file__).resolve().parent
SB, ML, MLA = "safeboard", "mlflow", "mlflow_auth"
COLUMNS = {
    SB: "safeboard (HTTPS + API key)",
    ML: "MLflow (HTTP, no auth)",
    MLA: "MLflow basic-auth (HTTP)",
}
TARGETS = {"P1": 250_000.0, "P2_ms": 50.0, "P2_export": 1_000_000.0, "P3_us": 2.0, "P4_mib": 150.0}
STALL_REQS = 30.0  # a 40 ms delayed-ACK stall caps one connection at ~25 requests/s


@dataclass
class Plan:
    quick: bool
    phase_seconds: float
    small_seconds: float
    sb_read_points: int
    ml_read_points: int
    downsample_reads: int
    export_reads: int
    history_reads: int
    sdk_calls: int
    sdk_points: int
    mlflow_auth: bool
    auth_four_clients: bool

    @classmethod
    def make(cls, quick: bool, skip_auth: bool) -> Plan:
        if quick:
            return cls(True, 2.0, 1.0, 1_000_000, 10_000, 20, 1, 1, 50_000, 200_000, False, False)
        return cls(False, 8.0, 3.0, 1_000_000, 100_000, 20, 3, 3, 200_000, 1_000_000,
                   not skip_auth, True)  # fmt: skip


@dataclass
class Results:
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profiles: dict[str, Any] = field(default_factory=dict)

    def put(self, row: str, column: str, value: Any) -> None:
        self.cells.setdefault(row, {})[column] = value

    def get(self, row: str, column: str) -> Any:
        return self.cells.get(row, {}).get(column)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _env_without(prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


# --- servers ---------------------------------------------------------------------------------


def start_safeboard(
    work: Path, command: list[str], extra_env: dict[str, str] | None = None
) -> tuple[Server, Endpoint]:
    data = work / "safeboard-data"  # the server creates it (0700); the parent is private
    port = free_port()
    discovery = data / "discovery.json"
    # Only the defaults: no SAFEBOARD_* from this shell changes the server's configuration.
    # OPENBLAS_* (set on some machines for old OpenBLAS builds) slow a current numpy; both
    # go together, for this command alone.
    env = _env_without(("SAFEBOARD", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    env.update(extra_env or {})  # what a caller sets on purpose (bench/sweep.py: a database)

    def ready() -> bool:
        try:
            info = json.loads(discovery.read_text())
            health = httpx.get(f"{info['url']}/healthz", verify=_ca(info["tls"]["ca_cert"]),
                               timeout=2, trust_env=False)  # fmt: skip
        except (httpx.HTTPError, KeyError, OSError, ValueError):
            return False  # not written yet, or not answering yet
        return health.status_code == 200

    cmd = [*command, "server", "--tls", "--port", str(port), "--data-dir", str(data)]
    server = start_server(
        SB, cmd, url=f"https://127.0.0.1:{port}", log_path=work / "safeboard.log",
        ready=ready, env=env, timeout=60,
    )  # fmt: skip
    info = json.loads(discovery.read_text())
    endpoint = Endpoint(SB, info["url"], f"Bearer {info['api_key']}", info["tls"]["ca_cert"])
    return server, endpoint


def _ca(path: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=path)


def start_mlflow(work: Path, mlflow: str, *, auth: bool) -> tuple[Server, Endpoint]:
    name = MLA if auth else ML
    home = work / name
    home.mkdir()
    port = free_port()
    env = _env_without(("MLFLOW_",))
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")  # nothing leaves 127.0.0.1
    cmd = [
        mlflow, "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--default-artifact-root", str(home / "artifacts"), "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
    auth_header = None
    if auth:
        password = secrets.token_urlsafe(24)
        ini = home / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{home / 'basic_auth.db'}\n"
            f"admin_username = admin\nadmin_password = {password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        ini.chmod(0o600)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_urlsafe(32)  # its CSRF key
        cmd += ["--app-name", "basic-auth"]
        auth_header = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    server = start_server(
        name, cmd, url=url, log_path=work / f"{name}.log", ready=ready, env=env, cwd=home,
        timeout=240,
    )  # fmt: skip
    return server, Endpoint(ML, url, auth_header, None)


@contextmanager
def running(start: Callable[[], tuple[Server, Endpoint]]) -> Iterator[tuple[Server, Endpoint]]:
    began = time.monotonic()
    server, endpoint = start()
    say(f"{server.name} ready at {server.url} (pid {server.pid}, {time.monotonic() - began:.0f} s)")
    try:
        yield server, endpoint
    finally:
        server.stop()
        say(f"{server.name} stopped")


# --- measurements ----------------------------------------------------------------------------


def ingest_row(points: int, clients: int, reuse: bool) -> str:
    conn = "reused connection" if reuse else "new connection per request"
    return f"ingest {clients} client{'s' if clients > 1 else ''}, batch {points:,}, {conn}"


def measure_ingest(
    res: Results, column: str, endpoint: Endpoint, new_run: Callable[[], str], plan: Plan, *,
    sizes: tuple[int, ...], client_counts: tuple[int, ...],
) -> None:  # fmt: skip
    for points in sizes:
        for clients in client_counts:
            for reuse in (True, False):
                run_ids = [new_run() for _ in range(clients)]
                result = ingest_load(
                    endpoint, run_ids, points=points, reuse=reuse, seconds=plan.phase_seconds
                )
                row = ingest_row(points, clients, reuse)
                report_load(res, row, column, result)


def report_load(res: Results, row: str, column: str, result: LoadResult) -> None:
    res.put(row, column, result.points_per_second)
    say(
        f"  {column}: {row}: {result.points_per_second:,.0f} points/s "
        f"({result.requests} requests in {result.seconds:.1f} s, median "
        f"{result.median_request_ms:.1f} ms)"
    )
    if result.errors:
        res.notes.append(f"{column}, {row}: errors: {result.errors[:3]}")
        say(f"  errors: {result.errors[:3]}")


def measure_small(res: Results, column: str, endpoint: Endpoint, plan: Plan) -> None:
    for reuse in (True, False):
        rate = small_requests(endpoint, reuse=reuse, seconds=plan.small_seconds, max_requests=5000)
        row = f"small requests/s, {'reused' if reuse else 'new'} connection"
        res.put(row, column, rate)
        say(f"  {column}: {row}: {rate:,.1f}")


def warm_up(endpoint: Endpoint, new_run: Callable[[], str]) -> None:
    """Untimed: a few small requests and batches on new connections, so that every worker
    process (MLflow runs four) has done its lazy imports and first queries."""
    small_requests(endpoint, reuse=False, seconds=1.0, max_requests=20)
    ingest_load(endpoint, [new_run() for _ in range(4)], points=1000, reuse=False, seconds=2.0)


def put_memory(res: Results, row: str, column: str, memory: Memory) -> None:
    res.put(row, column, memory.rss_mib)
    res.put(row + " (PSS)", column, memory.pss_mib)
    res.put("server processes", column, memory.processes)
    say(f"  {column}: {row}: RSS {memory.rss_mib:,.0f} MiB, PSS {memory.pss_mib:,.0f} MiB "
        f"over {memory.processes} processes")  # fmt: skip


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def safeboard_reads(res: Results, endpoint: Endpoint, plan: Plan) -> str:
    """Store a metric of ``plan.sb_read_points`` points, read it downsampled and whole;
    returns the path of its downsampled history."""
    n = plan.sb_read_points
    with endpoint.client() as client:
        run_id = safeboard_run(client, "bench-read")
        step = min(100_000, n)
        bodies = SafeboardBodies(run_id, step)
        headers = {"Content-Type": "application/json"}
        began = time.perf_counter()
        for _ in range(n // step):
            client.post(bodies.path, content=bodies.next(), headers=headers).raise_for_status()
        loaded = time.perf_counter() - began
        res.put("ingest 1 client, batch 100,000, reused connection", SB, n / loaded)
        say(f"  safeboard: stored {n:,} points in batches of {step:,}: {n / loaded:,.0f} points/s")

        path = f"/api/v1/runs/{run_id}/history?metric=loss&buckets=2000"
        first = client.get(path)
        first.raise_for_status()
        body = first.json()["metrics"]["loss"]
        if len(body["last_step"]) > 2000 or body["last_step"][-1] != n - 1:
            raise RuntimeError(f"downsampled history: {len(body['last_step'])} buckets, "
                               f"up to step {body['last_step'][-1]} of {n - 1}")  # fmt: skip
        reused = [timed(lambda: client.get(path).raise_for_status())[0]
                  for _ in range(plan.downsample_reads)]  # fmt: skip
        exports = []
        for _ in range(plan.export_reads):
            seconds, response = timed(
                lambda: client.get(f"/api/v1/runs/{run_id}/points", params={"metric": "loss"})
            )
            response.raise_for_status()
            parse, points = timed(response.json)
            if len(points["steps"]) != n:
                raise RuntimeError(f"export returned {len(points['steps'])} of {n} points")
            exports.append((seconds, parse, len(response.content)))
    with endpoint.client(reuse=False) as fresh:
        new = [timed(lambda: fresh.get(path).raise_for_status())[0]
               for _ in range(max(5, plan.downsample_reads // 2))]  # fmt: skip
    row_ds = f"read {n:,} points downsampled to 2,000 buckets, median ms"
    res.put(row_ds, SB, statistics.median(reused) * 1000)
    res.put(row_ds + ", new connection", SB, statistics.median(new) * 1000)
    res.put("downsampled read p90 ms (reused)", SB, sorted(reused)[int(len(reused) * 0.9)] * 1000)
    seconds = statistics.median(e[0] for e in exports)
    res.put("full history, points/s", SB, n / seconds)
    res.put("full history, seconds", SB, seconds)
    res.put("full history, client JSON parse s", SB, statistics.median(e[1] for e in exports))
    res.put("full history, points", SB, n)
    say(
        f"  safeboard: downsampled {statistics.median(reused) * 1000:.1f} ms median "
        f"({statistics.median(new) * 1000:.1f} ms new connection); full export "
        f"{seconds:.2f} s = {n / seconds:,.0f} points/s, {exports[0][2] / 1e6:.0f} MB, "
        f"client parse {exports[0][1]:.2f} s"
    )
    return path


def read_loop(endpoint: Endpoint, path: str, *, seconds: float) -> int:
    """Downsampled reads one after another for ``seconds`` (bounded); returns how many."""
    count = 0
    with endpoint.client() as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and count < 1000:
            client.get(path).raise_for_status()
            count += 1
    return count


def mlflow_reads(res: Results, endpoint: Endpoint, plan: Plan) -> None:
    n = plan.ml_read_points
    with endpoint.client() as client:
        run_id = mlflow_run(client, "bench-read")
    # Four clients, one run, a new connection per request (MLflow's fastest way in).
    result = ingest_load(
        endpoint, [run_id] * 4, points=1000, reuse=False, seconds=600,
        max_requests=max(1, n // 4000),
    )  # fmt: skip
    if result.errors:
        res.notes.append(f"mlflow read setup: {result.errors[:3]}")
    n = result.stored
    say(f"  mlflow: stored {n:,} points for the read in {result.seconds:.1f} s")
    times = []
    with endpoint.client() as client:
        for _ in range(plan.history_reads):
            began = time.perf_counter()
            count, token = 0, None
            for _page in range(1000):
                params = {"run_id": run_id, "metric_key": "loss"}
                if token:
                    params["page_token"] = token
                page = client.get("/api/2.0/mlflow/metrics/get-history", params=params)
                page.raise_for_status()
                data = page.json()
                count += len(data.get("metrics", []))
                token = data.get("next_page_token")
                if not token:
                    break
            times.append(time.perf_counter() - began)
            if count != n:
                raise RuntimeError(f"get-history returned {count} of {n} points")
    seconds = statistics.median(times)
    res.put("full history, points/s", ML, n / seconds)
    res.put("full history, seconds", ML, seconds)
    res.put("full history, points", ML, n)
    say(f"  mlflow: get-history of {n:,} points: {seconds:.2f} s = {n / seconds:,.0f} points/s")


def sdk_env(work: Path, endpoint: Endpoint) -> dict[str, str]:
    env = _env_without(("SAFEBOARD", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    if endpoint.auth_header is None or endpoint.ca_file is None:
        raise RuntimeError("the SDK needs safeboard's API key and CA file")
    env.update(
        SAFEBOARD_URL=endpoint.url,
        SAFEBOARD_API_KEY=endpoint.auth_header.removeprefix("Bearer "),
        SAFEBOARD_CA_CERT=endpoint.ca_file,
        SAFEBOARD_CONFIG_DIR=str(work / "sdk-config"),
        SAFEBOARD_SPOOL_DIR=str(work / "sdk-spool"),
        SAFEBOARD_DATA_DIR=str(work / "sdk-no-local-server"),
    )
    return env


def probe(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[1]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def sdk_ingest(res: Results, work: Path, endpoint: Endpoint, plan: Plan) -> None:
    cmd = [sys.executable, str(HERE / "sdk_probe.py"), "ingest", "--points", str(plan.sdk_points)]
    out = probe(cmd, sdk_env(work, endpoint), timeout=600)
    row = "ingest 1 SDK client: run.log() to acknowledged, points/s"
    res.put(row, SB, out["points_per_second"])
    if out["stored"] != out["points"]:
        res.notes.append(f"SDK ingest: stored {out['stored']} of {out['points']} points")
    say(f"  safeboard: SDK {out['points']:,} points in {out['seconds']:.2f} s = "
        f"{out['points_per_second']:,.0f} points/s (log loop {out['log_loop_s']:.2f} s, "
        f"stored {out['stored']:,})")  # fmt: skip


def sdk_cost(res: Results, work: Path, endpoint: Endpoint, plan: Plan) -> None:
    cmd = [sys.executable, str(HERE / "sdk_probe.py"), "cost", "--calls", str(plan.sdk_calls)]
    out = probe(cmd, sdk_env(work, endpoint), timeout=300)
    res.put("log() call, median us", SB, out["median_ns"] / 1000)
    res.put("log() call, p99 us", SB, out["p99_ns"] / 1000)
    res.put("log() call, mean us in a plain loop", SB, out["plain_loop_mean_ns"] / 1000)
    res.put("log() timer overhead us (included above)", SB, out["timer_overhead_ns"] / 1000)
    if out["stored"] != out["expected"]:
        res.notes.append(f"SDK log(): stored {out['stored']} of {out['expected']} points")
    say(f"  safeboard: log() median {out['median_ns'] / 1000:.2f} us, p99 "
        f"{out['p99_ns'] / 1000:.2f} us, p99.9 {out['p999_ns'] / 1000:.1f} us, max "
        f"{out['max_ns'] / 1e6:.1f} ms over {out['calls']:,} calls (timer "
        f"{out['timer_overhead_ns']:.0f} ns); plain loop {out['plain_loop_mean_ns']:.0f} ns; "
        f"finish {out['finish_s']:.2f} s, stored {out['stored']:,}")  # fmt: skip


def mlflow_log_metric(res: Results, endpoint: Endpoint, python: str | None, plan: Plan) -> None:
    if python is None:
        res.notes.append("mlflow.log_metric not measured: no python beside the mlflow command")
        return
    cmd = [python, str(HERE / "mlflow_probe.py"), "--url", endpoint.url,
           "--seconds", "3" if plan.quick else "8",
           "--async-calls", "300" if plan.quick else "2000",
           "--flush-timeout", "20" if plan.quick else "60"]  # fmt: skip
    env = _env_without(("MLFLOW_",))
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")  # requests
    out = probe(cmd, env, timeout=180)
    res.put("log() call, median us", ML, out["sync"]["median_ns"] / 1000)
    res.put("log() call, p99 us", ML, out["sync"]["p99_ns"] / 1000)
    res.put("log() call, median us (synchronous=False)", ML, out["async"]["median_ns"] / 1000)
    res.put("log() call, p99 us (synchronous=False)", ML, out["async"]["p99_ns"] / 1000)
    flush_s = out["async"]["flush_s"]
    flush = "not done in the time allowed" if flush_s is None else f"{flush_s:.1f} s"
    if flush_s is not None:
        rate = out["async"]["calls"] / (out["async"]["seconds"] + flush_s)
        res.put("synchronous=False: queue delivered, points/s", ML, rate)
    say(f"  mlflow: log_metric median {out['sync']['median_ns'] / 1000:,.0f} us over "
        f"{out['sync']['calls']} calls; synchronous=False median "
        f"{out['async']['median_ns'] / 1000:,.1f} us, p99 {out['async']['p99_ns'] / 1000:,.0f} us "
        f"over {out['async']['calls']:,} calls, flush {flush}")  # fmt: skip


def profile_phase(
    res: Results, name: str, server: Server, *, seconds: float, out_dir: Path,
    load: Callable[[], Any],
) -> None:  # fmt: skip
    profiler = Profiler(server.pid, seconds, out_dir / f"{name}.txt")
    if not profiler.running:
        res.notes.append("py-spy not found: no profile")
        load()
        return
    time.sleep(0.5)  # py-spy attaches
    load()
    raw = profiler.finish()
    if raw is None:
        res.notes.append(f"py-spy wrote no profile for {name} (ptrace allowed?)")
        return
    samples, own, total = top_frames(raw, 12)
    res.profiles[name] = {"samples": samples, "self": own, "total": total, "raw": str(raw)}


# --- the three servers -----------------------------------------------------------------------


def bench_safeboard(res: Results, work: Path, command: list[str], plan: Plan,
                    profile_dir: Path | None) -> None:  # fmt: skip
    with running(lambda: start_safeboard(work, command)) as (server, endpoint):
        put_memory(res, "server RSS MiB, idle", SB, server.memory())
        with endpoint.client() as client:

            def new_run() -> str:
                return safeboard_run(client, "bench")

            warm_up(endpoint, new_run)
            measure_small(res, SB, endpoint, plan)

            # The SDK first, on a fresh server: its peak is P4's "under the P1 load".
            with MemorySampler(server.pid) as sampler:
                sdk_ingest(res, work, endpoint, plan)
            put_memory(res, "server RSS MiB, peak under SDK ingest (P1 load)", SB, sampler.peak)
            with MemorySampler(server.pid) as sampler:
                measure_ingest(
                    res, SB, endpoint, new_run, plan, sizes=(10_000, 1_000), client_counts=(1, 4)
                )
            put_memory(res, "server RSS MiB, peak under ingest", SB, sampler.peak)
            put_memory(res, "server RSS MiB, after ingest", SB, server.memory())
            sdk_cost(res, work, endpoint, plan)
            with MemorySampler(server.pid) as sampler:
                history = safeboard_reads(res, endpoint, plan)
            put_memory(res, "server RSS MiB, peak during reads", SB, sampler.peak)
            files = list((work / "safeboard-data").glob("*.db*"))
            size = sum(f.stat().st_size for f in files) / 2**20
            res.notes.append(f"safeboard's SQLite files after the reads: {size:,.0f} MiB "
                             f"({', '.join(sorted(f.name for f in files))})")  # fmt: skip
            if profile_dir is not None:
                say("  profiling safeboard (py-spy): 1 client, batch 10,000, reused connection")
                seconds = 8.0
                profile_phase(
                    res,
                    "safeboard-ingest-10k",
                    server,
                    seconds=seconds,
                    out_dir=profile_dir,
                    load=lambda: ingest_load(
                        endpoint, [new_run()], points=10_000, reuse=True, seconds=seconds - 1
                    ),
                )
                say("  profiling safeboard (py-spy): SDK ingest")
                profile_phase(
                    res,
                    "safeboard-sdk-ingest",
                    server,
                    seconds=20.0,
                    out_dir=profile_dir,
                    load=lambda: sdk_ingest(Results(), work, endpoint, plan),
                )
                say("  profiling safeboard (py-spy): downsampled reads of 1M points")
                profile_phase(
                    res,
                    "safeboard-downsampled-read",
                    server,
                    seconds=6.0,
                    out_dir=profile_dir,
                    load=lambda: read_loop(endpoint, history, seconds=5.0),
                )


SHM = Path("/dev/shm")  # noqa: S108  (only read, and only MLflow's leftovers removed)


def _huey_dirs() -> set[Path]:
    """MLflow's job runner keeps its queues in a fresh /dev/shm/tmp* directory per start and
    leaves it behind; find those (holding only its ``*.mlflow-huey-store*`` files)."""
    if not SHM.is_dir():
        return set()
    found = set()
    for entry in SHM.glob("tmp*"):
        try:
            names = [f.name for f in entry.iterdir()] if entry.is_dir() else []
        except OSError:
            continue
        if names and all(".mlflow-huey-store" in name for name in names):
            found.add(entry)
    return found


def bench_mlflow(res: Results, work: Path, mlflow: str, python: str | None, plan: Plan,
                 *, auth: bool) -> None:  # fmt: skip
    before = _huey_dirs()
    try:
        _bench_mlflow(res, work, mlflow, python, plan, auth=auth)
    finally:
        for leftover in _huey_dirs() - before:  # only what this server made
            shutil.rmtree(leftover, ignore_errors=True)


def _bench_mlflow(res: Results, work: Path, mlflow: str, python: str | None, plan: Plan,
                  *, auth: bool) -> None:  # fmt: skip
    column = MLA if auth else ML
    with running(lambda: start_mlflow(work, mlflow, auth=auth)) as (server, endpoint):
        put_memory(res, "server RSS MiB, idle", column, server.memory())
        with endpoint.client() as client:

            def new_run() -> str:
                return mlflow_run(client, "bench")

            warm_up(endpoint, new_run)
            measure_small(res, column, endpoint, plan)

            clients = (1, 4) if (not auth or plan.auth_four_clients) else (1,)
            with MemorySampler(server.pid) as sampler:
                measure_ingest(
                    res, column, endpoint, new_run, plan, sizes=(1_000,), client_counts=clients
                )
            put_memory(res, "server RSS MiB, peak under ingest", column, sampler.peak)
            put_memory(res, "server RSS MiB, after ingest", column, server.memory())
        if not auth:
            mlflow_reads(res, endpoint, plan)
            mlflow_log_metric(res, endpoint, python, plan)


# --- output ----------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


LOWER_IS_BETTER = (" ms", " us", "MiB", "seconds", "parse s")
NO_RATIO = ("server processes", "full history, points", "timer overhead")


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b or not a:
        return "-"
    x = a / b
    return f"{x:,.0f}x" if x >= 100 else (f"{x:,.1f}x" if x >= 10 else f"{x:,.2f}x")


def advantage(row: str, sb: Any, other: Any) -> str:
    """How many times better safeboard is (above 1: better; below 1: worse)."""
    if any(word in row for word in NO_RATIO):
        return "-"
    if any(word in row for word in LOWER_IS_BETTER):
        return ratio(other, sb)
    return ratio(sb, other)


def table(res: Results) -> str:
    columns = [c for c in (SB, ML, MLA) if any(c in row for row in res.cells.values())]
    width = max(len(r) for r in res.cells) + 2
    head = ["measure".ljust(width), *(COLUMNS[c].rjust(28) for c in columns), "  sb vs MLflow"]
    lines = ["".join(head), "-" * len("".join(head))]
    for row, cells in res.cells.items():
        values = [fmt(cells.get(c)).rjust(28) for c in columns]
        better = advantage(row, cells.get(SB), cells.get(ML))
        lines.append(row.ljust(width) + "".join(values) + "  " + better)
    return "\n".join(lines)


def verdicts(res: Results) -> list[str]:
    def val(row: str, column: str = SB) -> float | None:
        value = res.get(row, column)
        return float(value) if isinstance(value, (int, float)) else None

    def line(name: str, what: str, value: float | None, target: float, unit: str, *,
             higher: bool) -> str:  # fmt: skip
        if value is None:
            return f"{name} {what}: not measured"
        factor = value / target if higher else target / value  # above 1: better than asked
        how = (f"met with a {factor:.2f}x margin" if factor >= 1
               else f"MISSED: {1 / factor:.2f}x short")  # fmt: skip
        return (f"{name} {what}: {fmt(value)} {unit} (target {'>=' if higher else '<='} "
                f"{fmt(target)}): {how}")  # fmt: skip

    sdk = val("ingest 1 SDK client: run.log() to acknowledged, points/s")
    http10k = val(ingest_row(10_000, 1, True))
    ds = next((v for r in res.cells if r.startswith("read ") and r.endswith("median ms")
               for v in [val(r)]), None)  # fmt: skip
    out = [
        line("P1", "ingest, one SDK client, HTTPS + key", sdk, TARGETS["P1"], "points/s",
             higher=True),
        line("P1", "ingest, one HTTP client, batch 10,000", http10k, TARGETS["P1"], "points/s",
             higher=True),
        line("P2", "downsampled read of 1M points", ds, TARGETS["P2_ms"], "ms", higher=False),
        line("P2", "full export", val("full history, points/s"), TARGETS["P2_export"], "points/s",
             higher=True),
        line("P3", "log() median", val("log() call, median us"), TARGETS["P3_us"], "us",
             higher=False),
        line("P4", "server RSS under the P1 load (SDK ingest)",
             val("server RSS MiB, peak under SDK ingest (P1 load)"),
             TARGETS["P4_mib"], "MiB", higher=False),
        line("P4", "server RSS under 1 to 4 HTTP clients", val("server RSS MiB, peak under ingest"),
             TARGETS["P4_mib"], "MiB", higher=False),
    ]  # fmt: skip
    for column in (SB, ML, MLA):
        reused = val("small requests/s, reused connection", column)
        new = val("small requests/s, new connection", column)
        if reused is not None and new is not None:
            # A health check takes a few ms; ~25/s on one connection is Nagle's algorithm
            # holding the response body until the client's delayed ACK (40 ms) arrives.
            verdict = ("capped near 25/s: a 40 ms delayed-ACK stall (TCP_NODELAY off)"
                       if reused < STALL_REQS else "no delayed-ACK stall")  # fmt: skip
            out.append(f"TCP_NODELAY, {COLUMNS[column]}: {reused:.0f} small requests/s reused vs "
                       f"{new:.0f}/s on new connections: {verdict}")  # fmt: skip
    for column in (ML, MLA):
        mine, theirs = val(ingest_row(10_000, 1, True)), val(ingest_row(1_000, 1, True), column)
        if mine and theirs:
            out.append(f"ingest, 1 client, reused: safeboard (batch 10,000) / {COLUMNS[column]} "
                       f"(batch 1,000): {ratio(mine, theirs)}")  # fmt: skip
        mine_new, theirs_new = val(ingest_row(10_000, 1, False)), val(ingest_row(1_000, 1, False),
                                                                       column)  # fmt: skip
        if mine_new and theirs_new:
            out.append(f"ingest, 1 client, new connections: safeboard (batch 10,000) / "
                       f"{COLUMNS[column]}: {ratio(mine_new, theirs_new)}")  # fmt: skip
    return out


def source_state() -> str:
    """The commit of the safeboard being measured, and whether the tree has changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(HERE.parent), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return f"commit {head.stdout.strip()}" + (" + local changes in src/" if dirty.stdout else "")


def print_report(res: Results, plan: Plan, elapsed: float) -> None:
    print()
    print(f"safeboard {source_state()}")
    print(f"safeboard vs MLflow on {os.cpu_count()} cores ({'quick' if plan.quick else 'full'} "
          f"run, {elapsed:.0f} s; phases of {plan.phase_seconds:.0f} s; one run: expect +-10-20% "
          f"noise between runs)")  # fmt: skip
    print(table(res))
    print("(sb vs MLflow: how many times better safeboard is than MLflow without auth, for "
          "rates and for times or memory alike; below 1x it is worse)")  # fmt: skip
    print()
    for line in verdicts(res):
        print(line)
    for name, prof in res.profiles.items():
        print(f"\nprofile {name}: {prof['samples']} busy samples ({prof['raw']})")
        print("  self time:")
        for frame, n in prof["self"][:8]:
            print(f"    {100 * n / max(1, prof['samples']):5.1f}%  {frame}")
        print("  total time (on the stack):")
        for frame, n in prof["total"][:12]:
            print(f"    {100 * n / max(1, prof['samples']):5.1f}%  {frame}")
    for note in res.notes:
        print(f"note: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases, under 2 minutes")
    parser.add_argument(
        "--mlflow",
        default=os.environ.get("MLFLOW_BIN") or shutil.which("mlflow"),
        help="the mlflow command (default: $MLFLOW_BIN, else mlflow on PATH)",
    )
    parser.add_argument(
        "--mlflow-python",
        default=None,
        help="python with mlflow installed, for log_metric "
        "(default: the python beside the mlflow command)",
    )
    parser.add_argument(
        "--safeboard",
        default=f"{sys.executable} -m safeboard",
        help="the safeboard command (default: this python -m safeboard)",
    )
    parser.add_argument("--only", choices=("safeboard", "mlflow"), help="benchmark one side")
    parser.add_argument(
        "--no-mlflow-auth", action="store_true", help="skip the run with MLflow's basic-auth app"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also sample safeboard's server with py-spy, raw stacks in DIR",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args()  # fmt: skip

    plan = Plan.make(args.quick, args.no_mlflow_auth)
    if args.only != "safeboard" and not args.mlflow:
        parser.error("mlflow not found: pass --mlflow PATH, set MLFLOW_BIN, or use --only "
                     "safeboard (see bench/README.md)")  # fmt: skip
    python = args.mlflow_python
    if python is None and args.mlflow:
        beside = Path(args.mlflow).resolve().parent / "python"
        python = str(beside) if beside.exists() else None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    res = Results()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="safeboard-bench-") as tmp:
        work = Path(tmp)
        try:
            if args.only != "mlflow":
                say("safeboard")
                bench_safeboard(res, work, shlex.split(args.safeboard), plan, args.profile)
            if args.only != "safeboard":
                say("MLflow, no auth")
                bench_mlflow(res, work, args.mlflow, python, plan, auth=False)
                if plan.mlflow_auth:
                    say("MLflow, basic-auth app")
                    bench_mlflow(res, work, args.mlflow, python, plan, auth=True)
        except (RuntimeError, AssertionError, httpx.HTTPError, subprocess.SubprocessError) as exc:
            res.notes.append(f"stopped early: {type(exc).__name__}: {exc}")
            say(f"stopped early: {exc}")
    print_report(res, plan, time.monotonic() - began)
    if args.json:
        args.json.write_text(json.dumps(
            {"plan": asdict(plan), "cells": res.cells, "notes": res.notes,
             "profiles": res.profiles, "verdicts": verdicts(res)}, indent=2))  # fmt: skip
    return 1 if any(n.startswith("stopped early") for n in res.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
