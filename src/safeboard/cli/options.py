"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["data_dir_option", "resolve_data_dir"]

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data directory (default: $SAFEBOARD_DATA_DIR, else the XDG data directory).",
    )(func)


def resolve_data_dir(data_dir: Path | None) -> Path:
    from safeboard.settings import default_data_dir

    return (data_dir or default_data_dir()).expanduser()
