"""The jobs queue (P8, issue 14): claims per second and the long-poll's wake-up, on SQLite
and PostgreSQL, at the service level (safeboard.jobs: the calls the agent routes make).

    python bench/claims.py               # 2,000 tasks per run; SQLite and PostgreSQL
    python bench/claims.py --quick       # 300 tasks, 20 wake-ups
    python bench/claims.py --no-postgres # SQLite only

Per database: a temporary data directory (and, for PostgreSQL, a temporary cluster of
Debian's PostgreSQL, as the tests start it), the server's own services (build_services),
TASKS empty tasks submitted through the task service (submits/s), then 1, 2 and 4 claimer
threads, each an agent leasing a task and reporting its exit as fast as it can, until the
queue is empty (claims/s: a lease and an exit report each, two write transactions; every
task must be leased exactly once). Then the wake-up: an agent waits in ``lease`` (long-poll)
and a task is submitted; the time from the submit's return to the lease's return, median
and p99 (target: 100 ms; P8's submit-to-running <= 1 s includes the agent's start of the
process and is measured with the agent). A claim that meets SQLite's busy timeout (5 s) is
retried, as an agent retries the 503 it would get, and counted. Not part of CI.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, where its name would hide
# the standard library's queue module (which psycopg imports): take that directory out.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import argparse  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import TypeVar  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from bench.sorts import postgres  # noqa: E402

from safeboard.auth.permissions import Role  # noqa: E402
from safeboard.cli.local import Local  # noqa: E402
from safeboard.datadir import ensure_data_dir  # noqa: E402
from safeboard.jobs.queue import AgentEvent  # noqa: E402
from safeboard.jobs.spec import TaskSpec  # noqa: E402
from safeboard.secret_store import ensure_secrets  # noqa: E402
from safeboard.services import Services, build_services  # noqa: E402
from safeboard.settings import load_settings  # noqa: E402
from safeboard.storage import create_engine, upgrade  # noqa: E402

CLAIMERS = (1, 2, 4)
WAKE_TARGET_MS = 100
T = TypeVar("T")


class Busy:
    retries = 0
    lock = threading.Lock()


def retried(call: Callable[[], T]) -> T:
    while True:
        try:
            return call()
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            with Busy.lock:
                Busy.retries += 1


def services_on(data_dir: Path, url: str | None) -> Services:
    directory = ensure_data_dir(data_dir)
    ensure_secrets(directory)
    settings = load_settings(directory, **({"database": {"url": url}} if url else {}))
    engine = create_engine(settings.database_url)
    upgrade(engine)
    services = build_services(settings, engine)
    services.task_wakeup.start()
    return services


def enrolled(services: Services, count: int) -> list[str]:
    """The ids of ``count`` agents enrolled as ``safeboard agent join`` enrolls one (an
    attempt names an enrolled agent: task_attempts.agent_id references agents.id)."""
    admin = Local(services).principal("bench")
    ids = []
    for index in range(count):
        made = services.agents.create_join_token(
            admin, pool="bench", labels=[], ttl=None, url="http://127.0.0.1:8000"
        )
        token = ".".join(made.join_string.split("@")[0].split(".")[1:3])  # <id>.<secret>
        agent, _ = services.agents.enroll(token, hostname=f"bench-{index}", version="",
                                          labels=[], address="127.0.0.1")  # fmt: skip
        ids.append(agent.id)
    return ids


def claims(
    services: Services, tasks: int, claimers: int, agents: list[str]
) -> tuple[float, float, int, int]:
    """(submits/s, claims/s, duplicates, busy retries) for ``tasks`` tasks."""
    owner = Local(services).principal("bench")
    Busy.retries = 0
    started = time.perf_counter()
    for _ in range(tasks):
        services.tasks.submit(owner, "bench", TaskSpec(["true"]))
    submits = tasks / (time.perf_counter() - started)
    taken: list[list[int]] = [[] for _ in range(claimers)]
    exited = AgentEvent("exited", exit_code=0)

    def claim(index: int) -> None:
        agent = agents[index]
        while (lease := retried(lambda: services.queue.lease(agent, [], []))) is not None:
            taken[index].append(lease.task_id)
            task_id, attempt = lease.task_id, lease.attempt
            retried(lambda: services.queue.report(task_id, attempt, agent, exited))  # noqa: B023

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = [task for mine in taken for task in mine]
    if len(every) != tasks:
        raise SystemExit(f"{len(every)} tasks leased of {tasks}")
    return submits, tasks / elapsed, len(every) - len(set(every)), Busy.retries


def wakeups(services: Services, rounds: int, agent: str) -> list[float]:
    """Milliseconds from a submit's return to the waiting lease's return."""
    owner = Local(services).principal("bench")
    found: list[float] = []
    woke: list[float] = []

    def wait() -> None:
        services.queue.lease(agent, [], [], wait_seconds=20)
        woke.append(time.perf_counter())

    for _ in range(rounds):
        woke.clear()
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)  # the waiter is waiting
        services.tasks.submit(owner, "bench", TaskSpec(["true"]))
        submitted = time.perf_counter()
        waiter.join()
        found.append((woke[0] - submitted) * 1000)
    return found


def measure(name: str, url: str | None, tasks: int, rounds: int) -> dict[str, object]:
    print(f"{name}:", flush=True)
    with tempfile.TemporaryDirectory(prefix="safeboard-bench-queue-") as tmp:
        services = services_on(Path(tmp) / "data", url)
        try:
            services.users.add("bench", role=Role.ADMIN, actor="bench")
            services.projects.create(Local(services).principal("bench"), "bench")
            agents = enrolled(services, max(CLAIMERS))
            result: dict[str, object] = {}
            for claimers in CLAIMERS:
                result[f"claims{claimers}"] = figures = claims(services, tasks, claimers, agents)
                print(f"  {claimers} claimer(s): {figures[1]:,.0f} claims/s, {figures[2]} "
                      f"duplicates, {figures[3]} busy retries", flush=True)  # fmt: skip
            result["wake"] = wakeups(services, rounds, agents[0])
            return result
        finally:
            services.task_wakeup.stop()
            services.metrics.rollups.stop()
            services.engine.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 tasks, 20 wake-ups")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    tasks = args.tasks or (300 if args.quick else 2_000)
    rounds = 20 if args.quick else 50
    results = {"SQLite": measure("SQLite", None, tasks, rounds)}
    if not args.no_postgres:
        with postgres() as url:
            results["PostgreSQL"] = measure("PostgreSQL", url, tasks, rounds)
    names = list(results)
    print(f"\nQueue, service level, {tasks:,} empty tasks per row (lease + exit report each)")
    print(f"{'':34}" + "".join(f"{n:>16}" for n in names))
    first = results[names[0]]["claims1"]
    assert isinstance(first, tuple)
    print(f"{'submits/s (1 thread)':34}"
          + "".join(f"{results[n]['claims1'][0]:>16,.0f}" for n in names))  # type: ignore[index]  # fmt: skip
    for claimers in CLAIMERS:
        row = "".join(f"{results[n][f'claims{claimers}'][1]:>16,.0f}"  # type: ignore[index]
                      for n in names)  # fmt: skip
        print(f"{f'claims/s, {claimers} claimer(s)':34}{row}")
    dupes = "".join(f"{sum(results[n][f'claims{c}'][2] for c in CLAIMERS):>16}"  # type: ignore[index]
                    for n in names)  # fmt: skip
    print(f"{'tasks leased twice (all rows)':34}{dupes}")
    busy = "".join(f"{sum(results[n][f'claims{c}'][3] for c in CLAIMERS):>16}"  # type: ignore[index]
                   for n in names)  # fmt: skip
    print(f"{'busy retries (all rows)':34}{busy}")
    for label, fraction in (("wake-up median, ms", 0.5), ("wake-up p99, ms", 0.99)):
        row = "".join(f"{percentile(results[n]['wake'], fraction):>16.1f}"  # type: ignore[arg-type]
                      for n in names)  # fmt: skip
        print(f"{label:34}{row}")
    worst = max(percentile(results[n]["wake"], 0.5) for n in names)  # type: ignore[arg-type]
    verdict = "met" if worst <= WAKE_TARGET_MS else "NOT met"
    print(f"\nwake-up median {worst:.1f} ms (target <= {WAKE_TARGET_MS} ms): {verdict}")


if __name__ == "__main__":
    main()
