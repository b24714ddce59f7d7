"""``safeboard tls show``."""

from __future__ import annotations

from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir

__all__ = ["tls"]


@click.group()
def tls() -> None:
    """Inspect the server's TLS certificates."""


@tls.command()
@data_dir_option
def show(data_dir: Path | None) -> None:
    """Print certificate paths, fingerprints, expiry, and how to trust the local CA.

    Describes the TLS of the server running with the data directory (as it resolved its
    flags), or, when none runs, what a start with the settings file would serve."""
    from safeboard.datadir import ensure_data_dir
    from safeboard.secret_store import ensure_secrets
    from safeboard.server.tls_report import describe_tls, running_server
    from safeboard.settings import load_settings

    directory = ensure_data_dir(resolve_data_dir(data_dir))
    ensure_secrets(directory)
    running = running_server(directory)
    click.echo(describe_tls(load_settings(directory), running=running))
