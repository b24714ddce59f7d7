"""``safeboard audit list | verify``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from safeboard.cli.options import data_dir_option, json_option, resolve_data_dir
from safeboard.cli.output import json_lines, table

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from safeboard.audit.events import AuditEntry

__all__ = ["audit"]

F = TypeVar("F", bound=Callable[..., Any])

_NO_LOG = "run safeboard db upgrade or start the server first"
_RELATIVE = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _parse_when(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """A point in time: ISO-8601 (UTC unless it carries an offset) or an age like 24h."""
    if value is None:
        return None
    text = value.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount, unit = int(relative[1]), _UNITS[relative[2]]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither ISO-8601 nor an age like 30m, 24h, 7d, 2w"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _database_options(func: F) -> F:
    func = click.option(
        "--database-url", default=None, help="SQLAlchemy URL (default: from settings)."
    )(func)
    return data_dir_option(func)


@click.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("list")
@_database_options
@click.option(
    "--since",
    metavar="WHEN",
    callback=_parse_when,
    help="From this time: ISO-8601 (UTC unless an offset is given) or an age (30m, 24h, 7d).",
)
@click.option("--action", default=None, help="Only this action, e.g. login.failed.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Show at most this many of the newest matching entries.",
)
@click.option("--wide", is_flag=True, help="Also the address and detail columns.")
@json_option
def list_(
    data_dir: Path | None,
    database_url: str | None,
    since: datetime | None,
    action: str | None,
    limit: int,
    wide: bool,
    as_json: bool,
) -> None:
    """List the newest matching audit entries, oldest of them first."""
    from safeboard.audit import service

    with _audit_log(data_dir, database_url) as engine:
        found = service.list_entries(
            engine, since=since, action=action, limit=limit, newest_first=True
        )
    found.reverse()
    if as_json:
        json_lines(_as_json(entry) for entry in found)
    else:
        _print_table(found, wide)


@audit.command()
@_database_options
@click.pass_context
def verify(ctx: click.Context, data_dir: Path | None, database_url: str | None) -> None:
    """Check the hash chain: exit 0 when intact, 1 listing each problem.

    Record the printed head (id and hash) somewhere else: the chain alone cannot show that
    its newest entries were removed or all rewritten; the recorded head can.
    """
    from safeboard.audit import service
    from safeboard.audit.events import PROBLEM_HELP

    with _audit_log(data_dir, database_url) as engine:
        report = service.verify(engine)
    click.echo(report.summary)
    for problem in report.problems:
        click.echo(f"  #{problem.id}: {problem.what} ({PROBLEM_HELP[problem.what]})")
    if not report.ok:
        ctx.exit(1)


@contextmanager
def _audit_log(data_dir: Path | None, database_url: str | None) -> Iterator[Engine]:
    """An engine on the configured database that has an audit log. Failures (no database,
    no table, unreachable server) end as a one-line ConfigError naming the fix."""
    from sqlalchemy.exc import SQLAlchemyError

    from safeboard.audit import service
    from safeboard.cli.local import require_server_data
    from safeboard.datadir import ensure_data_dir
    from safeboard.errors import ConfigError
    from safeboard.secret_store import ensure_secrets
    from safeboard.settings import load_settings, mask_url_password
    from safeboard.storage import create_engine

    if database_url is None:  # else the database named is checked below
        require_server_data(resolve_data_dir(data_dir).resolve())
    directory = ensure_data_dir(resolve_data_dir(data_dir))
    ensure_secrets(directory)
    overrides = {"database": {"url": database_url}} if database_url else {}
    url = load_settings(directory, **overrides).database_url
    engine = create_engine(url)  # no I/O yet
    sqlite_path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if sqlite_path is not None and not Path(sqlite_path).is_file():  # don't create one
        raise ConfigError(f"no database at {sqlite_path}: {_NO_LOG}")
    try:
        if not service.has_log(engine):
            raise ConfigError(f"database {mask_url_password(url)} has no audit log: {_NO_LOG}")
        yield engine
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        raise ConfigError(
            f"cannot use database {mask_url_password(url)}: {reason}; check --database-url "
            "and that the server is up"
        ) from None
    finally:
        engine.dispose()


def _as_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(timespec="microseconds"),
        "action": entry.action,
        "actor": entry.actor,
        "target": entry.target,
        "outcome": entry.outcome,
        "address": entry.address,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


_LONG_HEX = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{4,}\b")


def _short(ref: str, narrow: bool) -> str | tuple[str, ...]:
    """``artifact:<32 hex>`` with the id as the CLI prints ids (its first 12 characters,
    a prefix the commands take; --json and --wide have them whole); on a narrow terminal
    the kind and the id go on two lines, so that the id is never split."""
    shown = _LONG_HEX.sub(lambda m: m.group(1), ref)
    if not narrow or len(shown) <= 13:
        return shown
    lines: list[str] = []
    for part in shown.split(" "):  # "user:root (key:<id>)": a line each, ids whole
        kind, colon, rest = part.partition(":")
        lines += [f"{kind}:", rest] if colon and rest and len(part) > 13 else [part]
    return tuple(lines)


def _print_table(found: list[AuditEntry], wide: bool) -> None:
    """At 80 columns: id, time, action, actor, target, outcome (``--wide``: address and
    detail too, ids whole). Cells are text, never markup: a username like "[red]" is shown
    as is. Ids, actions and times are never split across lines."""
    from rich.console import Console

    if not found:
        click.echo("no audit entries match")
        return
    headers = ["id", "at (UTC)", "action", "actor", "target", "outcome"]
    if wide:
        headers += ["address", "detail"]
    narrow = Console().width < 100
    rows: list[list[str | tuple[str, ...]]] = []
    for entry in found:
        actor = entry.actor if wide else _short(entry.actor, narrow)
        target = entry.target if wide else _short(entry.target, narrow)
        at = entry.at.strftime("%Y-%m-%d %H:%M")
        cells: list[str | tuple[str, ...]] = [
            str(entry.id),
            at,
            entry.action,
            actor,
            target,
            entry.outcome,
        ]
        if wide:
            detail = json.dumps(entry.detail, ensure_ascii=False, sort_keys=True)
            cells += [entry.address, detail if entry.detail else ""]
        rows.append(cells)
    table(headers, rows, no_wrap=["id", "at (UTC)", "action", "outcome"], compact=True)
