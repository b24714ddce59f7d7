"""safeboard.cli.lean: httpx and httpcore imported without trio and httpx's own command
line (P7: the CPU of ``safeboard import tensorboard``'s start), both importable after;
and the client without cryptography until a certificate is parsed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = """
import sys
from safeboard.cli.lean import import_http_lean
import_http_lean()
import httpcore._synchronization, httpx
print(sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("trio", "pygments")))
print(httpcore._synchronization.trio, callable(httpx.Client))
import trio, pygments  # importable again
print(trio.__name__, pygments.__name__)
"""


def test_httpx_comes_without_trio_and_pygments_which_stay_importable() -> None:
    pytest.importorskip("trio")
    pytest.importorskip("pygments")
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == ["[]", "None True", "trio pygments"]


def test_the_client_imports_cryptography_only_to_parse_a_certificate() -> None:
    code = "import sys, safeboard.client\nprint('cryptography' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


BLAS = """
import os
from safeboard.cli.lean import single_threaded_blas
single_threaded_blas()
import numpy
print(os.environ["OPENBLAS_NUM_THREADS"], len(os.listdir("/proc/self/task")))
"""


def test_numpy_comes_with_one_openblas_thread_unless_the_user_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", BLAS], capture_output=True, text=True, check=True, timeout=60,
        env=env,
    )  # fmt: skip
    assert done.stdout.split() == ["1", "1"]  # this process's only thread: no BLAS threads
    env["OPENBLAS_NUM_THREADS"] = "2"
    done = subprocess.run(
        [sys.executable, "-c", BLAS], capture_output=True, text=True, check=True, timeout=60,
        env=env,
    )  # fmt: skip
    assert done.stdout.split()[0] == "2"


EXIT = """
import atexit, logging, sys
from safeboard.cli.lean import exit_at_once
atexit.register(lambda: print("exit handler ran"))
logging.basicConfig(stream=sys.stderr, format="%(message)s")
print("a line, buffered: stdout is a pipe")
logging.getLogger("x").warning("a log line")
print("to stderr", file=sys.stderr, end="")
exit_at_once(3)
"""


def test_exit_at_once_flushes_and_runs_no_exit_handler() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", EXIT],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 3
    assert done.stdout == "a line, buffered: stdout is a pipe\n"
    assert done.stderr == "a log line\nto stderr"
