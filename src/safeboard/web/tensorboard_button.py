"""The "TensorBoard" button of the run page and the compare view: shown for runs that keep
event files (and where TensorBoard is available); tensorboard.js posts the run ids to
``/api/v1/tensorboards`` (CSRF) and opens the one-time link in a new tab with no opener."""

from __future__ import annotations

import json
from collections.abc import Sequence

from safeboard.web.html import Markup, el

__all__ = ["SCRIPT", "tensorboard_button"]

SCRIPT = "tensorboard.js"


def tensorboard_button(run_ids: Sequence[str], *, label: str = "TensorBoard") -> Markup:
    return el(
        "p",
        el(
            "button",
            label,
            type="button",
            id="open-tensorboard",
            class_="secondary",
            data_runs=json.dumps(list(run_ids)),
            data_testid="open-tensorboard",
            title="Open TensorBoard over these runs' event files, in a new tab",
        ),
        " ",
        el("span", "", id="tensorboard-status", role="status", class_="hint"),
        class_="tensorboard",
    )
