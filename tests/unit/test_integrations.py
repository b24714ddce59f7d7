"""safeboard.integrations without the frameworks (what CI has): importing a module
imports no framework, a framework missing says what to install, and the conversions the
PyTorch integrations share (parameters flattened, numbers only as metrics). The
integrations themselves, with the real frameworks: tests/frameworks."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from safeboard.integrations._hookup import flat_params, framework, metrics_of

MODULES = ["lightning", "pytorch_lightning", "transformers", "accelerate"]


def test_importing_an_integration_imports_no_framework() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import safeboard.integrations.{m}\n" for m in MODULES)
        + "print(json.dumps(sorted(set(sys.modules) & "
        + "{'torch', 'lightning', 'pytorch_lightning', 'transformers', 'accelerate'})))"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(src)}, timeout=60,
    )  # fmt: skip
    assert json.loads(result.stdout) == []


def test_a_missing_framework_says_what_to_install() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, framework("SafeboardLogger", "lightning"):
        import safeboard_no_such_framework  # noqa: F401
    assert "SafeboardLogger needs safeboard_no_such_framework" in str(caught.value)
    assert "pip install 'safeboard[lightning]'" in str(caught.value)
    assert caught.value.name == "safeboard_no_such_framework"


def test_an_unknown_name_is_an_attribute_error() -> None:
    from safeboard.integrations import lightning

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = lightning.Nope


class Mode(enum.Enum):
    FAST = "fast"


def test_parameters_are_flattened_and_made_storable() -> None:
    params = {
        "optim": {"lr": np.float32(0.5), "betas": (0.9, 0.99), "sched": {"name": "cos"}},
        "mode": Mode.FAST, "path": Path("/data"), "bad": float("nan"), "n": np.int64(3),
        "none": None, "flag": True, "mixed": [1, object], "inf": [1.0, float("inf")],
    }  # fmt: skip
    flat = flat_params(params)
    assert flat == {
        "optim/lr": 0.5, "optim/betas": [0.9, 0.99], "optim/sched/name": "cos",
        "mode": "fast", "path": "/data", "bad": "nan", "n": 3, "none": None, "flag": True,
        "mixed": "[1, <class 'object'>]", "inf": "[1.0, inf]",
    }  # fmt: skip
    json.dumps(flat, allow_nan=False)  # what a run's config must be


def test_metrics_are_the_numbers_only() -> None:
    values = {
        "loss": 0.25, "step": 3, "f32": np.float32(0.5), "zero_d": np.array(2.0),
        "text": "hi", "flag": True, "array": np.ones(3), "none": None,
    }  # fmt: skip
    assert metrics_of(values) == {"loss": 0.25, "step": 3.0, "f32": 0.5, "zero_d": 2.0}
