"""Ctrl-C in a training script: the run ends ``killed`` whether or not the script used
``with safeboard.init(...)`` (the README's form has no ``with``), and what was logged
before the signal is delivered. SIGTERM does the same in a script that turns it into a
KeyboardInterrupt, the recipe of docs/sdk.md."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.test_sdk import discovery_key, sdk_env

pytestmark = pytest.mark.e2e

Start = Callable[..., ServerProcess]

LOOP = """
    for step in range(1_000_000):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        if step == 20:
            print(run.id, flush=True)  # the test sends its signal once it reads this
        time.sleep(0.01)
"""

PLAIN = "import time, safeboard\nrun = safeboard.init(project='mnist')\n" + textwrap.dedent(LOOP)
SIGTERM_RECIPE = "import signal\nsignal.signal(signal.SIGTERM, signal.default_int_handler)\n"

FORMS = {
    "plain": (PLAIN, signal.SIGINT),
    "sigterm": (SIGTERM_RECIPE + PLAIN, signal.SIGTERM),
    "with": (
        "import time, safeboard\nwith safeboard.init(project='mnist') as run:\n"
        + textwrap.indent(textwrap.dedent(LOOP), "    "),
        signal.SIGINT,
    ),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_an_interrupt_mid_loop_ends_the_run_killed(
    server_factory: Start, tmp_path: Path, form: str
) -> None:
    server = server_factory()
    script = tmp_path / "train.py"
    text, signum = FORMS[form]
    script.write_text(text)
    # As from a terminal, whatever this worker's own handling of SIGINT: a child of a
    # process that ignores it inherits that, and Python then never raises
    # KeyboardInterrupt (env resets it, then execs: the same pid).
    training = subprocess.Popen(
        ["env", "--default-signal=INT", sys.executable, str(script)],
        env=sdk_env(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert training.stdout is not None
        run_id = training.stdout.readline().strip()
        assert run_id, training.communicate(timeout=30)[1]
        handling = _signal_masks(training.pid)
        training.send_signal(signum)
        try:
            _, err = training.communicate(timeout=60)
        except subprocess.TimeoutExpired as slow:
            raise AssertionError(f"no exit 60 s after the signal; {handling}") from slow
    finally:
        if training.poll() is None:
            training.kill()
    assert "KeyboardInterrupt" in err  # stopped mid-loop, as by Ctrl-C
    headers = {"Authorization": f"Bearer {discovery_key(server)}"}
    with server.client() as client:
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
    assert run["status"] == "killed", (run, err)
    (loss,) = [m for m in run["metrics"] if m["key"] == "loss"]
    assert loss["count"] >= 21  # what was logged before Ctrl-C arrived


def _signal_masks(pid: int) -> str:
    """The process's blocked, ignored and caught signals (hex masks), as Linux shows them."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return ", ".join(line for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
