"""The review of issue 11: a live run's spool is its script's alone (`safeboard sync`
and `--discard` leave it be), the sender never dies silently, every line the SDK prints
starts ``safeboard: `` with counts that agree, a failed init() leaves nothing on disk,
finish(timeout=T) returns within about T, and a stopped local server is named as such."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import safeboard
from tests.e2e.conftest import ServerProcess, cli_env, run_cli

pytestmark = pytest.mark.e2e


def sync_env(spool: Path) -> dict[str, str]:
    env = cli_env(spool.parent / "nowhere")
    env["SAFEBOARD_SPOOL_DIR"] = str(spool)
    return env


def script(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_sync_and_discard_leave_a_run_its_script_still_writes(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    run = safeboard.init(project="p", name="live", mode="offline", spool_dir=spool, quiet=True)
    for step in range(50):
        run.log({"loss": 1.0}, step=step)
    assert run.flush(timeout=10) or True  # offline: the points reach the spool's files
    time.sleep(0.3)
    batches = sorted(p.name for p in (spool / run.id).glob("batch-*"))
    assert batches
    for _ in range(3):
        synced = run_cli("sync", env=sync_env(spool))
        assert synced.returncode == 0, synced.stderr  # the script delivers: not a failure
        assert f"live ({run.id}): still being written by its script (pid {os.getpid()})" in (
            synced.stdout
        )
        assert "50 points spooled now" in synced.stdout
        assert "undelivered" not in synced.stderr
    dropped = run_cli("sync", "--discard", run.id, "--yes", env=sync_env(spool))
    assert dropped.returncode != 0
    assert "still being written by its script" in dropped.stderr
    assert "Traceback" not in dropped.stderr
    assert sorted(p.name for p in (spool / run.id).glob("batch-*")) == batches
    run.finish()  # raises nothing: its files were left alone
    dropped = run_cli("sync", "--discard", run.id, "--yes", env=sync_env(spool))
    assert dropped.returncode == 0, dropped.stderr
    assert f"discarded run live ({run.id}): 50 points" in dropped.stdout
    assert not (spool / run.id).exists()


def test_a_script_that_died_releases_its_run_for_sync(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    env = sync_env(spool)
    killed = script(
        """
        import os, safeboard
        run = safeboard.init(project="p", name="dead", mode="offline", quiet=True)
        run.log({"loss": 1.0})
        run.flush()
        os._exit(9)  # no finish, no atexit: the kernel releases the lock
        """,
        env,
    )
    assert killed.returncode == 9, killed.stderr
    dropped = run_cli("sync", "--discard", "dead", "--yes", env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert "discarded run dead" in dropped.stdout
    assert ": 1 point\n" in dropped.stdout


def test_the_sender_survives_its_spool_vanishing_and_says_so_once(tmp_path: Path) -> None:
    done = script(
        """
        import shutil, time, safeboard
        run = safeboard.init(project="p", name="gone", mode="offline", quiet=True,
                             flush_interval=0.05)
        for step in range(40):
            run.log({"loss": 1.0}, step=step)
            if step == 10:
                time.sleep(0.3)
                shutil.rmtree(run.spool.path)
            time.sleep(0.01)
        time.sleep(0.3)
        run.finish(timeout=2)
        print("done", run._sender.is_alive())
        """,
        sync_env(tmp_path / "spool"),
    )
    assert done.returncode == 0, done.stderr
    assert "done False" in done.stdout
    assert "Exception in thread" not in done.stderr
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "delivery failed" in line]
    assert len(said) == 1, done.stderr
    assert said[0].startswith("safeboard: run ")
    assert "No such file or directory" in said[0]
    assert all(line.startswith("safeboard: ") for line in done.stderr.splitlines())


def test_every_line_starts_safeboard_and_counts_agree(tmp_path: Path) -> None:
    done = script(
        """
        import safeboard
        run = safeboard.init(project="p", name="one", mode="offline", quiet=True)
        run.log({"ok": 1.0, "a/../b": 2.0})
        run.finish()
        """,
        sync_env(tmp_path / "spool"),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines
    assert all(line.startswith("safeboard: ") for line in lines), lines
    assert any("not logging metric 'a/../b'" in line for line in lines)
    assert any(": 1 point not delivered yet" in line for line in lines), lines


def test_a_failed_init_leaves_no_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with pytest.raises(safeboard.SafeboardError):
        safeboard.init(
            project="p", url="http://127.0.0.1:1/foo", api_key="sb_x", spool_dir=spool, quiet=True
        )
    assert not spool.exists() or not any(spool.iterdir())


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def test_finish_returns_within_its_timeout_when_the_server_hangs(
    tmp_path: Path, hanging_port: int
) -> None:
    done = script(
        f"""
        import time, safeboard
        run = safeboard.init(project="p", name="hang", url="http://127.0.0.1:{hanging_port}",
                             api_key="sb_x", quiet=True, flush_interval=0.05)
        for step in range(20):
            run.log({{"loss": 1.0}}, step=step)
        time.sleep(0.5)
        began = time.monotonic()
        run.finish(timeout=2)
        print("finish took", round(time.monotonic() - began, 1))
        """,
        sync_env(tmp_path / "spool"),
    )
    assert done.returncode == 0, done.stderr
    took = float(done.stdout.split("finish took")[1])
    assert took < 3.5, done.stdout
    assert "20 points not delivered yet" in done.stderr


def test_a_stopped_local_server_is_named_with_the_fix(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    server.stop()
    env = cli_env(server.data_dir)
    env["SAFEBOARD_SPOOL_DIR"] = str(tmp_path / "spool")
    env["SAFEBOARD_CONFIG_DIR"] = str(tmp_path / "config")
    done = script(
        """
        import safeboard
        run = safeboard.init(project="p", name="away", quiet=True)
        run.finish(timeout=0.5)
        """,
        env,
    )
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"safeboard: cannot reach {server.url}: the local server is not run")
    assert "server.sock" in first
    assert "start it with `safeboard server`" in first
    assert "no such file or directory" not in first.lower()
    assert "logging to the spool" in first


def test_sync_beside_a_live_run_then_after_its_script_was_killed(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Repro A of the review: `safeboard sync` in a loop beside a live run leaves it to its
    script; once the script is killed (no finish), sync delivers it and marks it failed."""
    server = server_factory()
    env = cli_env(server.data_dir)
    env["SAFEBOARD_SPOOL_DIR"] = str(tmp_path / "spool")
    env["SAFEBOARD_CONFIG_DIR"] = str(tmp_path / "config")
    code = """
        import sys, safeboard
        run = safeboard.init(project="p", name="looped", quiet=True, flush_interval=0.05)
        for step in range(300):
            run.log({"loss": 1.0}, step=step)
        run.flush()
        print(run.id, flush=True)
        sys.stdin.readline()
        """
    live = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert live.stdout is not None
        run_id = live.stdout.readline().strip()
        assert run_id, live.communicate()[1]
        for _ in range(5):
            synced = run_cli("sync", env=env)
            assert synced.returncode == 0, synced.stderr
            assert f"looped ({run_id}): still being written by its script (pid {live.pid})" in (
                synced.stdout
            )
        live.kill()
    finally:
        if live.poll() is None:
            live.kill()
        live.communicate()  # closes the pipes
    synced = run_cli("sync", env=env)
    assert synced.returncode == 0, synced.stderr
    assert f"looped ({run_id}): nothing sent, done (its script ended without finishing" in (
        synced.stdout
    )
    shown = run_cli("runs", "show", run_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert '"failed"' in shown.stdout
    assert "300" in shown.stdout or '"loss"' in shown.stdout
    assert not (tmp_path / "spool" / run_id).exists()
