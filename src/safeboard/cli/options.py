"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from safeboard.client import Client

__all__ = ["connect", "data_dir_option", "json_option", "resolve_data_dir", "url_option"]

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


def url_option(func: F) -> F:
    return click.option(
        "--url", default=None, help="Server (default: as the SDK finds it: login, env, local)."
    )(func)


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="One JSON object per line (stable keys)."
    )(func)


def connect(url: str | None) -> Client:
    """The typed client for the server the SDK would use, with its stored key (or the local
    server's discovery key, read again if a restart wrote another); a server that does not
    answer is said at once (INTERACTIVE_POLICY), not after seconds of tries."""
    from safeboard.client import Client
    from safeboard.client.credentials import resolve_server
    from safeboard.client.retry import INTERACTIVE_POLICY

    access = resolve_server(url)
    access.require_key()
    # renewing: a follow that outlives a restart which minted a new discovery key goes on
    return Client(access.client(renewing=True), retry=INTERACTIVE_POLICY)
