"""``safeboard doctor``: check this installation as an auditor would (safeboard.doctor)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir

__all__ = ["doctor"]

_LEVELS = ("info", "warning", "error")


@click.command()
@data_dir_option
@click.option("--database-url", default=None, help="SQLAlchemy URL (default: from settings).")
@click.option(
    "--json",
    "as_json_lines",
    is_flag=True,
    help="One JSON object a line: check, severity, message, fix.",
)
@click.option("--all", "show_all", is_flag=True, help="Show the checks that passed too.")
@click.option(
    "--fail-on",
    type=click.Choice(_LEVELS),
    default="warning",
    show_default=True,
    help="Exit 1 when a finding is at least this severe.",
)
@click.pass_context
def doctor(
    ctx: click.Context,
    data_dir: Path | None,
    database_url: str | None,
    as_json_lines: bool,
    show_all: bool,
    fail_on: str,
) -> None:
    """Check the data directory, secrets, TLS, exposure, database, accounts, keys and
    agents; print each finding with its fix. Changes nothing."""
    from safeboard.doctor import Severity, as_json, examine

    overrides = {"database": {"url": database_url}} if database_url else {}
    threshold = Severity[fail_on.upper()]
    worst = Severity.OK
    shown = 0
    for finding in examine(resolve_data_dir(data_dir), **overrides):
        worst = max(worst, finding.severity)
        if finding.severity is Severity.OK and not show_all:
            continue
        shown += 1
        if as_json_lines:
            click.echo(json.dumps(as_json(finding)))
            continue
        click.echo(f"{finding.severity.label:7} {finding.check}: {finding.message}")
        if finding.fix:
            click.echo(f"        fix: {finding.fix}")
    if not as_json_lines and not shown:
        click.echo("no findings")
    if worst >= threshold:
        ctx.exit(1)
