"""The TensorBoard drop-in driven with torch tensors, next to torch's own SummaryWriter
(scripts/writer-torch-check.py, in its torch mode: CUDA tensors on a GPU machine): every
call of a script written for ``torch.utils.tensorboard`` is stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_a_torch_script_runs_unchanged_but_for_the_import(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
    env["SAFEBOARD_SYSTEM_METRICS"] = "0"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "writer-torch-check.py"),
         "--spool", str(tmp_path / "spool")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
        stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"torch {torch.__version__} on " in result.stdout
    assert "MISSING" not in result.stdout
