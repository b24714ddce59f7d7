"""``safeboard config show | docs``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir

__all__ = ["config"]


@click.group()
def config() -> None:
    """Inspect the effective settings."""


@config.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(data_dir: Path | None, as_json: bool) -> None:
    """Print the effective settings (files, environment, defaults), secrets masked."""
    import tomli_w

    from safeboard.datadir import ensure_data_dir
    from safeboard.secret_store import ensure_secrets
    from safeboard.settings import load_settings

    directory = ensure_data_dir(resolve_data_dir(data_dir))
    ensure_secrets(directory)
    dumped = load_settings(directory).model_dump(mode="json", exclude_none=True)
    click.echo(json.dumps(dumped, indent=2) if as_json else tomli_w.dumps(dumped), nl=as_json)


@config.command()
def docs() -> None:
    """Print the settings reference (docs/settings.md) generated from the field descriptions."""
    from safeboard.settings_doc import render_settings_doc

    click.echo(render_settings_doc(), nl=False)
