"""A Ctrl-C while ``python -m safeboard`` is still importing the CLI ends as one later
does: ``aborted`` on stderr, exit status 130, no traceback (a newcomer's trial saw a
KeyboardInterrupt traceback from an import in the first 0.1-0.3 s of a command).

The interrupt is raised by an import hook at the moment click is imported, so the test
does not depend on when a signal lands."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENTRY = """
import runpy, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["safeboard", "runs", "list", "--project", "mnist"]
runpy.run_module("safeboard", run_name="__main__")
"""


@pytest.mark.parametrize("module", ["click", "httpx"])  # the CLI's import; a command's own
def test_ctrl_c_during_the_imports_says_aborted(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ENTRY.format(module=module)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == "aborted"
    assert done.returncode == 130
