"""The worst ``run.log()`` call while the server is up, away, killed mid-run or answering
503 (issue 13): a training loop must never wait for the SDK (target: every call under
1 ms, median <= 2 us, P3), and nothing logged may be lost or stored twice.

    python bench/log_stall.py            # 1,000,000 calls per scenario
    python bench/log_stall.py --quick    # 200,000 calls: a smoke test, not figures to quote
    python bench/log_stall.py --mlflow-python /tmp/mlflow-venv/bin/python   # MLflow's side
    python bench/log_stall.py --floor --only away   # and the same loop without the SDK
    python bench/log_stall.py --host --only away    # and how often this machine held a loop
    python bench/log_stall.py --pace 10000 --only away --only up   # a training loop's pace
    python bench/log_stall.py --only away --python-packer   # as without the C packer

Each scenario runs a fresh interpreter (``probe``, as a training script would) that logs
``{...10 keys...}`` at every step, each call timed alone, against a safeboard server
(HTTPS, API key, SQLite) started here: ``up`` (the server takes everything), ``away``
(stopped before init(): the SDK spools from the start), ``killed`` (SIGKILL 0.3 s into the
loop) and ``busy`` (a gate in front answers 503 ``database_busy`` with Retry-After to every
batch while the loop runs). After the loop the server is back, the script finishes its
run, and the points stored are counted.

By default the loop logs as fast as it can (about 400,000 calls a second: a stress test far
past any training loop, whose sender then spools 100 MB a second on the other core).
``--pace N`` logs N steps a second instead, the time between steps spent outside the
interpreter lock as a training step waiting on its device spends it (``time.sleep`` every
10 steps), so that the figures are what a fast training loop meets.

MLflow: what ``mlflow.log_metric`` does with its server away (it retries inside the call:
the loop waits), bounded by a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from procs import Server, free_port, start_server

import safeboard
from safeboard.sdk import batches

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.busy_gate import BusyGate

HERE = Path(__file__).resolve().parent
KEYS = 10
SCENARIOS = ("up", "away", "killed", "busy")
KILL_AFTER = 0.3  # seconds into the loop
BUSY_AFTER = 3.0  # seconds the gate stays busy after the loop


def _figures(took: array[int], calls: int, loop: float) -> dict[str, Any]:
    ordered = sorted(took)

    def at(fraction: float) -> float:
        return ordered[min(calls - 1, int(calls * fraction))] / 1000

    return {
        "calls": calls, "loop_s": loop, "median_us": at(0.5), "p99_us": at(0.99),
        "p999_us": at(0.999), "max_ms": ordered[-1] / 1e6,
        "over_1ms": sum(1 for t in took if t > 1_000_000),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def _pacer(pace: float | None) -> Any:
    """A callable for step ``i``: without a pace, nothing; with one, every 10 steps it
    sleeps until step ``i`` is due (the interpreter lock let go, as a device wait does)."""
    if not pace:
        return None
    began = time.perf_counter()

    def wait(i: int) -> None:
        if i % 10 == 0:
            due = began + i / pace - time.perf_counter()
            if due > 0:
                time.sleep(due)

    return wait


def probe_floor(calls: int, pace: float | None = None) -> None:
    """The same loop with a bare ``log()`` (what run.log() does in the caller's thread,
    without the SDK: no sender thread, no packing): the stalls this machine's scheduler
    alone puts into a loop of ``calls`` timed calls, the floor for the figures above."""
    queue: deque[Any] = deque(maxlen=3 * 1024)

    def log(data: dict[str, float], step: int) -> None:
        queue.extend((step, time.time(), dict(data)))

    keys = [f"metric_{k}" for k in range(KEYS)]
    took = array("q", bytes(8 * calls))
    clock = time.perf_counter_ns
    wait = _pacer(pace)
    began = time.perf_counter()
    for i in range(calls):
        if wait is not None:
            wait(i)
        data = {key: i + k / 10 for k, key in enumerate(keys)}
        started = clock()
        log(data, step=i)
        took[i] = clock() - started
    print(json.dumps(_figures(took, calls, time.perf_counter() - began)), flush=True)


def probe_host(seconds: float) -> None:
    """A loop that only reads the clock for ``seconds``: each gap over 1 ms between two
    readings is this machine holding the thread (the hypervisor, the kernel), nothing
    Python or safeboard did. Such a hold that lands inside a timed ``log()`` call is a
    stall of it; one that lands between calls is not counted there, so the SDK's count
    over 1 ms above this one is what the SDK's own threads and writes added."""
    clock = time.perf_counter_ns
    gaps = []
    last = began = clock()
    end = began + int(seconds * 1e9)
    while last < end:
        now = clock()
        if now - last > 1_000_000:
            gaps.append(now - last)
        last = now
    print(json.dumps({"seconds": seconds, "gaps_over_1ms": len(gaps),
                      "worst_gap_ms": max(gaps, default=0) / 1e6}), flush=True)  # fmt: skip


def probe(calls: int, pace: float | None = None, *, python_packer: bool = False) -> None:
    """The training script: init, wait for "go", log ``calls`` points timing each call, say
    the figures, wait for "go" again (the server is back), finish. ``python_packer``: the
    SDK packs in Python, as where its C packer was not built (sdk/_pack.c)."""
    if python_packer:
        batches.PACK = None
    run = safeboard.init(project="bench-stall", name="stall")
    print(json.dumps({"run_id": run.id}), flush=True)
    sys.stdin.readline()
    keys = [f"metric_{k}" for k in range(KEYS)]
    took = array("q", bytes(8 * calls))  # not a list: nothing the garbage collector walks
    clock, log = time.perf_counter_ns, run.log
    wait = _pacer(pace)
    began = time.perf_counter()
    for i in range(calls):
        if wait is not None:
            wait(i)
        data = {key: i + k / 10 for k, key in enumerate(keys)}
        started = clock()
        log(data, step=i)
        took[i] = clock() - started
    figures = _figures(took, calls, time.perf_counter() - began)
    figures["backlog_points"] = len(run._queue) // 3
    print(json.dumps(figures), flush=True)
    sys.stdin.readline()
    began = time.perf_counter()
    run.finish(timeout=600)
    print(json.dumps({"finish_s": time.perf_counter() - began}), flush=True)


def _start(work: Path, port: int) -> tuple[Server, dict[str, Any]]:
    data = work / "data"
    discovery = data / "discovery.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}

    def ready() -> bool:
        try:
            info = json.loads(discovery.read_text())
            context = ssl.create_default_context(cafile=info["tls"]["ca_cert"])
            return httpx.get(f"{info['url']}/healthz", verify=context, timeout=2,
                             trust_env=False).status_code == 200  # fmt: skip
        except (httpx.HTTPError, KeyError, OSError, ValueError):
            return False

    cmd = [sys.executable, "-m", "safeboard", "server", "--tls", "--port", str(port),
           "--data-dir", str(data)]  # fmt: skip
    url, log_path = f"https://127.0.0.1:{port}", work / "server.log"
    server = start_server("safeboard", cmd, url=url, log_path=log_path, ready=ready, env=env)
    return server, json.loads(discovery.read_text())


def _stored(info: dict[str, Any], run_id: str) -> tuple[int, bool]:
    """Points the server holds for the loop's metrics, and whether each holds each step once."""
    context = ssl.create_default_context(cafile=info["tls"]["ca_cert"])
    headers = {"Authorization": f"Bearer {info['api_key']}"}
    with httpx.Client(base_url=info["url"], verify=context, headers=headers, trust_env=False,
                      timeout=120) as client:  # fmt: skip
        run = client.get(f"/api/v1/runs/{run_id}").json()
        if "metrics" not in run:
            raise RuntimeError(f"run {run_id}: {run}")
        # The loop's metrics only: the SDK's system metrics (sys/...) sample beside them.
        total = sum(int(m["count"]) for m in run["metrics"] if m["key"].startswith("metric_"))
        points = client.get(f"/api/v1/runs/{run_id}/points", params={"metric": "metric_3"})
        steps = points.json()["steps"]
    return total, steps == list(range(len(steps)))


def scenario(
    name: str, calls: int, work: Path, pace: float | None, *, python_packer: bool = False
) -> dict[str, Any]:
    work.mkdir(parents=True)
    port = free_port()
    server, info = _start(work, port)
    gate = None
    busy = threading.Event()  # the gate refuses metric batches while set
    url = info["url"]
    if name == "busy":
        upstream = httpx.Client(
            base_url=info["url"],
            timeout=120,
            trust_env=False,
            verify=ssl.create_default_context(cafile=info["tls"]["ca_cert"]),
        )
        gate = BusyGate(work / "data" / "tls", upstream,
                        lambda path: busy.is_set() and path.endswith("/metrics"))  # fmt: skip
        url = gate.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env.update(SAFEBOARD_URL=url, SAFEBOARD_API_KEY=info["api_key"],
               SAFEBOARD_CA_CERT=info["tls"]["ca_cert"], SAFEBOARD_QUIET="1",
               SAFEBOARD_SPOOL_DIR=str(work / "spool"), SAFEBOARD_CONFIG_DIR=str(work / "cfg"),
               SAFEBOARD_DATA_DIR=str(work / "no-local-server"))  # fmt: skip
    if name == "away":
        server.stop()
    script = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "probe", "--calls", str(calls),
         *(["--pace", str(pace)] if pace else []),
         *(["--python-packer"] if python_packer else [])],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert script.stdin is not None
    try:
        run_id = _said(script)["run_id"]
        if gate is not None:
            busy.set()
        script.stdin.write("go\n")
        script.stdin.flush()
        if name == "killed":
            threading.Timer(KILL_AFTER, server.proc.kill).start()
        figures = _said(script)
        if name in ("away", "killed"):
            server.stop()
            server, info = _start(work, port)
        if gate is not None:
            time.sleep(BUSY_AFTER)  # the SDK meets the 503s, and backs off
            busy.clear()
        script.stdin.write("go\n")
        script.stdin.flush()
        figures.update(_said(script))
        script.wait(60)
        assert script.stderr is not None
        figures["said"] = script.stderr.read().strip()
        figures["stored"], figures["each_once"] = _stored(info, run_id)
        if gate is not None:
            figures["refused"] = gate.refused
    finally:
        if script.poll() is None:
            script.kill()
        if gate is not None:
            gate.close()
        server.stop()
    figures["expected"] = calls * KEYS
    return figures


def _said(script: subprocess.Popen[str]) -> dict[str, Any]:
    """The probe's next line (JSON); its stderr when it ended instead."""
    assert script.stdout is not None
    line = script.stdout.readline()
    if not line:
        assert script.stderr is not None
        raise RuntimeError(f"the probe ended ({script.wait(10)}): {script.stderr.read()[-2000:]}")
    said: dict[str, Any] = json.loads(line)
    return said


MLFLOW_AWAY = """
import sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
began = time.perf_counter()
try:
    with mlflow.start_run():
        mlflow.log_metric("loss", 1.0, step=0)
    print(f"returned after {time.perf_counter() - began:.1f} s")
except Exception as exc:
    print(f"raised {type(exc).__name__} after {time.perf_counter() - began:.1f} s")
"""


def mlflow_away(python: str, timeout: float) -> str:
    """What one mlflow.start_run() + log_metric() does with the server away, in words."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    try:
        done = subprocess.run([python, "-c", MLFLOW_AWAY, f"http://127.0.0.1:{free_port()}"],
                              env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"still blocked in the call after {timeout:.0f} s (killed)"
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else f"exited {done.returncode}: {done.stderr.strip()[-200:]}"


def _host(seconds: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "host", "--seconds", f"{seconds:.3f}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return {"host": json.loads(done.stdout)["gaps_over_1ms"]}


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("calls", "calls", "{:,}"), ("median, us", "median_us", "{:.2f}"),
        ("p99, us", "p99_us", "{:.2f}"), ("p99.9, us", "p999_us", "{:.1f}"),
        ("max, ms", "max_ms", "{:.2f}"), ("calls over 1 ms", "over_1ms", "{:,}"),
        ("this machine's holds over 1 ms, a clock loop as long (--host)", "host", "{:,}"),
        ("loop, s", "loop_s", "{:.2f}"), ("backlog at loop end, points", "backlog_points", "{:,}"),
        ("peak RSS, MiB", "rss_mib", "{:.0f}"), ("finish(), s", "finish_s", "{:.1f}"),
        ("values logged", "expected", "{:,}"), ("values stored", "stored", "{:,}"),
        ("each step once", "each_once", "{}"), ("503s answered", "refused", "{:,}"),
    ]  # fmt: skip
    names = list(results)
    lines = ["| run.log({10 keys}) | " + " | ".join(names) + " |",
             "| --- |" + " ---: |" * len(names)]  # fmt: skip
    for label, key, form in rows:
        cells = [form.format(results[n][key]) if key in results[n] else "-" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "mode", nargs="?", default="bench", choices=["bench", "probe", "floor", "host"]
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the same loop without the SDK (this machine's floor)",
    )
    parser.add_argument(
        "--host",
        action="store_true",
        help="also count how often this machine held a loop that only reads the clock for "
        "over 1 ms, for as long as each scenario's loop ran",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="200,000 calls per scenario")
    parser.add_argument("--calls", type=int, help="calls per scenario (default 1,000,000)")
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="repeatable")
    parser.add_argument("--pace", type=float, help="steps a second (default: as fast as it can)")
    parser.add_argument(
        "--python-packer",
        action="store_true",
        help="the SDK packs log()'s points in Python (as without its C packer)",
    )
    parser.add_argument("--mlflow-python", default=os.environ.get("MLFLOW_PYTHON"),
                        help="a python with mlflow installed (bench/README.md)")  # fmt: skip
    args = parser.parse_args()
    calls = args.calls or (200_000 if args.quick else 1_000_000)
    if args.mode == "probe":
        probe(calls, args.pace, python_packer=args.python_packer)
        return 0
    if args.mode == "floor":
        probe_floor(calls, args.pace)
        return 0
    if args.mode == "host":
        probe_host(args.seconds)
        return 0
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sb-stall-") as tmp:
        for name in args.only or SCENARIOS:
            print(f"scenario {name}: {calls:,} calls", file=sys.stderr, flush=True)
            results[name] = scenario(
                name, calls, Path(tmp) / name, args.pace, python_packer=args.python_packer
            )
            if args.host:  # right after the loop, for as long as it ran
                results[name] |= _host(results[name]["loop_s"])
    floor = None
    if args.floor:
        print(f"the same loop without the SDK: {calls:,} calls", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "floor",
                               "--calls", str(calls), *(["--pace", str(args.pace)] if args.pace
                                                        else [])],
                              capture_output=True, text=True, check=True)  # fmt: skip
        floor = json.loads(done.stdout)
    pace = f"{args.pace:,.0f} steps a second" if args.pace else "as fast as it can"
    packer = "C" if batches.PACK is not None and not args.python_packer else "Python"
    print(f"the loop's pace: {pace}; log()'s packer: {packer}")
    print(table(results | ({"no SDK (floor)": floor} if floor else {})))
    lost = [n for n, r in results.items() if r["stored"] != r["expected"] or not r["each_once"]]
    worst = max(r["max_ms"] for r in results.values())
    median = max(r["median_us"] for r in results.values())
    kept = "nothing lost or stored twice" if not lost else "LOST OR DUPLICATED: " + ", ".join(lost)
    verdict = {True: "met", False: "NOT met"}
    print(f"\nworst call {worst:.2f} ms (target < 1 ms): {verdict[worst < 1]}; "
          f"median {median:.2f} us (P3 <= 2 us): {verdict[median <= 2]}; {kept}")  # fmt: skip
    if floor is not None:
        print(
            f"the same loop without the SDK: worst call {floor['max_ms']:.2f} ms, "
            f"{floor['over_1ms']} calls over 1 ms (this machine's floor)"
        )
    for name, result in results.items():
        for line in result.get("said", "").splitlines()[:3]:
            print(f"{name}, the SDK said: {line[:300]}")
    if args.mlflow_python:
        said = mlflow_away(args.mlflow_python, 20 if args.quick else 120)
        print(f"MLflow, server away: mlflow.start_run() + log_metric() {said}")
    else:
        print("MLflow, server away: not measured (give --mlflow-python or $MLFLOW_PYTHON)")
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())
