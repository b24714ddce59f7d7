"""The drop-in's public surface is tensorboardX's (issue 17): every public method of
``tensorboardX.SummaryWriter`` exists on ``safeboard.tensorboard.SummaryWriter`` with the
same parameters (names, order, kinds, defaults). Annotations may differ. What torch's writer
adds is accepted as keyword-only parameters, listed here; nothing else may differ."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from safeboard.tensorboard import SummaryWriter

tbx = pytest.importorskip("tensorboardX")

# torch.utils.tensorboard's parameters that tensorboardX lacks, and safeboard's own.
EXTRA_KEYWORDS = {
    "__init__": {"project", "run"},
    "add_scalar": {"new_style", "double_precision"},
    "add_hparams": {"hparam_domain_discrete", "run_name"},
}
# torch's writer has these; tensorboardX's has not.
EXTRA_METHODS = {"get_logdir"}


def _public(cls: type) -> dict[str, Any]:
    names = [
        n for n in dir(cls) if not n.startswith("_") or n in ("__init__", "__enter__", "__exit__")
    ]
    return {n: getattr(cls, n) for n in names if callable(getattr(cls, n))}


def _shape(function: Any, leave_out: set[str]) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name not in leave_out
    ]


def test_every_method_of_tensorboardx_exists_with_its_parameters() -> None:
    theirs = _public(tbx.SummaryWriter)
    ours = _public(SummaryWriter)
    assert sorted(set(theirs) - set(ours)) == []
    assert sorted(set(ours) - set(theirs)) == sorted(EXTRA_METHODS)
    differ = {
        name: (_shape(ours[name], EXTRA_KEYWORDS.get(name, set())), _shape(method, set()))
        for name, method in theirs.items()
        if _shape(ours[name], EXTRA_KEYWORDS.get(name, set())) != _shape(method, set())
    }
    assert differ == {}


def test_the_extra_parameters_are_keyword_only() -> None:
    for name, extras in EXTRA_KEYWORDS.items():
        parameters = inspect.signature(getattr(SummaryWriter, name)).parameters
        kinds = {parameters[extra].kind for extra in extras}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}, name
