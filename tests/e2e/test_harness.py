"""The e2e harness itself under pytest-xdist: a free port that another process takes
before the server binds it costs a retry on another port, not a failed test."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import conftest
from tests.e2e.conftest import start_server
from tests.support import forkserver

pytestmark = pytest.mark.e2e


def test_a_port_taken_before_the_server_binds_it_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        ports: Iterator[int] = iter([busy])
        real_free_port = conftest.free_port
        # The first "free" port is the taken one, as when another worker wins the race.
        monkeypatch.setattr(conftest, "free_port", lambda: next(ports, None) or real_free_port())
        server = start_server(tmp_path)
        try:
            assert server.port != busy
            with server.client() as client:
                assert client.get("/healthz").status_code == 200
        finally:
            server.stop()


def test_a_forked_server_stops_reads_and_fails_as_a_new_interpreter_does(tmp_path: Path) -> None:
    """tests/support/forkserver.py: a server forked from the worker's fork server ends with
    the status a new ``python -m safeboard server`` ends with (SIGTERM, SIGKILL, a usage
    error), writes the same log, and runs with its own environment (its data directory)."""
    ended: dict[bool, list[int | None]] = {}
    logs: dict[bool, list[str]] = {}
    for forked in (True, False):
        run = tmp_path / ("forked" if forked else "exec")
        run.mkdir()
        first = start_server(run, name="one", forked=forked)
        second = start_server(run, name="two", forked=forked)
        assert isinstance(first.process, forkserver.ForkedProcess) is (
            forked and forkserver.available()
        )
        assert (run / "one" / "safeboard.db").is_file()  # each with its own SAFEBOARD_DATA_DIR
        assert (run / "two" / "safeboard.db").is_file()
        first.process.terminate()
        second.process.kill()
        ended[forked] = [first.process.wait(timeout=30), second.process.wait(timeout=30)]
        refused = conftest._launch(run, ("--no-such-option",), "bad", None, 1, {}, forked=forked)
        ended[forked].append(refused.process.wait(timeout=60))
        last = first.log.splitlines()[-1].split(" ", 2)[2]  # past the time
        logs[forked] = [last.replace(str(first.process.pid), "PID"), refused.log.strip()]
    assert ended[True] == ended[False] == [0, -9, 2]
    assert logs[True] == logs[False]


def test_a_forked_cli_command_answers_as_a_new_interpreter_does(tmp_path: Path) -> None:
    """run_cli forks CLI commands from the fork server: the same stdout, stderr and exit
    status as ``python -m safeboard`` in a new interpreter, its stdin the given input, its
    own environment (data directory), and a hang ends in TimeoutExpired with the child
    killed."""
    server = start_server(tmp_path)
    data_dir = server.data_dir
    try:
        commands = [
            (("key", "create", "--name", "a"), None),  # a local command: the server's services
            (("user", "list", "--json"), None),
            (("key", "list", "--json"), None),
            (("no-such-command",), None),  # a usage error: exit 2, one line on stderr
            (("user", "delete", "nobody"), "y\n"),  # confirmed on stdin: "no such user"
        ]
        for args, given in commands:
            forked = conftest.run_cli(*args, data_dir=data_dir, input=given)
            fresh = conftest.run_cli(*args, data_dir=data_dir, input=given, fresh=True)
            assert (forked.returncode, _masked(forked.stderr)) == (
                fresh.returncode,
                _masked(fresh.stderr),
            ), args
            if args[:2] == ("key", "create"):
                assert forked.stdout.startswith("sb_")
                assert fresh.stdout.startswith("sb_")
            elif args[:2] == ("key", "list"):  # the same keys, both made above among them
                keys = [[json.loads(line)["id"] for line in done.stdout.splitlines()]
                        for done in (forked, fresh)]  # fmt: skip
                assert keys[0] == keys[1]
                assert len(keys[0]) >= 2
            else:
                assert forked.stdout == fresh.stdout, args
            if args[:2] == ("user", "delete"):  # the answer was read: past the question
                assert forked.returncode not in (0, 130)
                assert "nobody" in forked.stderr
        elsewhere = conftest.run_cli("key", "list", data_dir=tmp_path / "none")
        assert elsewhere.returncode != 0
        assert "no safeboard server data" in elsewhere.stderr
        if forkserver.available():
            started = time.monotonic()
            with pytest.raises(subprocess.TimeoutExpired):
                forkserver.run(["user", "delete", "nobody"], conftest.cli_env(data_dir),
                               input=None, timeout=2, hold_stdin=True)  # fmt: skip
            assert time.monotonic() - started < 10
    finally:
        server.stop()


def _masked(text: str) -> str:
    text = re.sub(r"sb_[0-9a-f]{12}_\S+", "KEY", text)
    return re.sub(r"key [0-9a-f]{12} ", "key ID ", text)
