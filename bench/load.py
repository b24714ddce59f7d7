"""Load generators: N client processes posting metric batches for a bounded time, and small
requests one after another (the TCP_NODELAY check).

Each client is its own process (spawned): the clients and the server share the machine's
two cores, and threads in one interpreter would also share one GIL.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from endpoints import Endpoint, bodies_for

__all__ = ["LoadResult", "ingest_load", "small_requests"]

STEP_STRIDE = 10**12  # each client writes its own step range (clients may share a run)


@dataclass(frozen=True)
class LoadSpec:
    endpoint: Endpoint
    run_ids: tuple[str, ...]  # one per client (the same id repeated: clients share a run)
    points: int  # per request
    reuse: bool  # one kept-alive connection per client, or a new one per request
    seconds: float
    max_requests: int  # per client


@dataclass(frozen=True)
class LoadResult:
    clients: int
    points: int
    requests: int
    seconds: float
    median_request_ms: float
    errors: list[str]
    stored: int  # points acknowledged, the untimed first request of each client included

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else 0.0


def _client_process(spec: LoadSpec, index: int, start: Any, results: Any) -> None:
    bodies = bodies_for(spec.endpoint, spec.run_ids[index], spec.points, index * STEP_STRIDE)
    headers = {"Content-Type": "application/json"}
    errors: list[str] = []
    latencies: list[float] = []
    points = requests = warm_points = 0
    elapsed = 0.0
    client = spec.endpoint.client(reuse=spec.reuse)
    try:
        # One request before the clock starts: imports, first handshake, first query plans.
        warm = client.post(bodies.path, content=bodies.next(), headers=headers)
        if warm.status_code == 200:
            warm_points = spec.points
        else:
            errors.append(f"{warm.status_code} {warm.text[:200]}")
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which prints it)
        errors.append(f"{type(exc).__name__}: {exc}")
    try:
        start.wait(120)  # every client (and the parent) ready: go
    except threading.BrokenBarrierError:
        errors.append("the start barrier broke")
    try:
        began = time.perf_counter()
        deadline = began + spec.seconds
        while not errors and requests < spec.max_requests:
            body = bodies.next()
            sent = time.perf_counter()
            response = client.post(bodies.path, content=body, headers=headers)
            done = time.perf_counter()
            requests += 1
            if response.status_code == 200:
                points += spec.points
                latencies.append(done - sent)
            else:
                errors.append(f"{response.status_code} {response.text[:200]}")
            if done >= deadline:
                break
        elapsed = time.perf_counter() - began
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    results.put((points, requests, elapsed, latencies, errors, warm_points))


def ingest_load(
    endpoint: Endpoint,
    run_ids: list[str],
    *,
    points: int,
    reuse: bool,
    seconds: float,
    max_requests: int = 100_000,
) -> LoadResult:
    """``len(run_ids)`` clients post batches of ``points`` for about ``seconds`` (each stops
    after the request that crosses the time, or after ``max_requests``)."""
    spec = LoadSpec(endpoint, tuple(run_ids), points, reuse, seconds, max_requests)
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(len(run_ids) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_client_process, args=(spec, i, start, results), daemon=True)
        for i in range(len(run_ids))
    ]
    for proc in procs:
        proc.start()
    outcomes: list[tuple[int, int, float, list[float], list[str], int]] = []
    try:
        # A client that failed before it was ready breaks the barrier; its result says why.
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(180)
        # A request is at most the client timeout (120 s); bound the wait past the run time.
        limit = time.monotonic() + seconds + 300
        while len(outcomes) < len(procs) and time.monotonic() < limit:
            try:
                outcomes.append(results.get(timeout=1))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    errors = [e for o in outcomes for e in o[4]]
    if len(outcomes) < len(procs):
        errors.append(f"{len(procs) - len(outcomes)} client(s) gave no result")
    latencies = [lat for o in outcomes for lat in o[3]]
    return LoadResult(
        clients=len(run_ids),
        points=sum(o[0] for o in outcomes),
        requests=sum(o[1] for o in outcomes),
        seconds=max((o[2] for o in outcomes), default=0.0),
        median_request_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
        errors=errors,
        stored=sum(o[0] + o[5] for o in outcomes),
    )


def small_requests(endpoint: Endpoint, *, reuse: bool, seconds: float, max_requests: int) -> float:
    """Requests per second for the health check, one after another on one client."""
    with endpoint.client(reuse=reuse) as client:
        client.get(endpoint.health_path).raise_for_status()
        count = 0
        began = time.perf_counter()
        deadline = began + seconds
        while count < max_requests:
            client.get(endpoint.health_path).raise_for_status()
            count += 1
            if time.perf_counter() >= deadline:
                break
        return count / (time.perf_counter() - began)
