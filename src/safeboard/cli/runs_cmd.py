"""``safeboard projects list`` and ``safeboard runs list | show | export``: the tracking
data, from whichever server the SDK would use (login, environment, or the local one)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["projects", "runs"]


def _api(url: str | None) -> Any:
    from safeboard.client.credentials import resolve_server

    access = resolve_server(url)
    if access.api_key is None:
        raise click.ClickException(f"no API key for {access.url}: run `safeboard login`")
    return access.client()


_url = click.option("--url", default=None, help="Server (default: as the SDK finds it).")
_json = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@click.group()
def projects() -> None:
    """Projects you can see."""


@projects.command("list")
@_url
@_json
def list_projects(url: str | None, as_json: bool) -> None:
    with _api(url) as api:
        found = api.get("/api/v1/projects").json()
    if as_json:
        for project in found:
            click.echo(json.dumps(project))
        return
    _table(
        ["project", "runs", "last run", "your role", "created", "description"],
        [
            [
                p["name"],
                str(p.get("runs", "")),  # (an older server does not say)
                (p.get("last_run_at") or "")[:16],
                p["role"] or "(admin)",
                p["created_at"][:16],
                p["description"],
            ]
            for p in found
        ],
    )


@click.group()
def runs() -> None:
    """Runs and their metrics."""


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _at(config: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(config, dict) or key not in config:
            return ""
        config = config[key]
    return config if isinstance(config, str) else json.dumps(config)


@runs.command("list")
@click.option("--project", required=True)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option(
    "--config",
    "config_keys",
    multiple=True,
    metavar="PATH",
    help="A config value to show (dotted path, e.g. opt.lr); repeat for more.",
)
@_url
@_json
def list_runs(
    project: str, limit: int, config_keys: tuple[str, ...], url: str | None, as_json: bool
) -> None:
    """The newest runs of a project."""
    params: dict[str, Any] = {"limit": limit, "config_key": list(config_keys)}
    with _api(url) as api:
        page = api.get(f"/api/v1/projects/{project}/runs", params=params).json()
    if as_json:
        for run in page["runs"]:
            click.echo(json.dumps(run))
        return
    _table(
        ["run", "name", "status", "created", *config_keys, "tags"],
        [[r["id"][:12], r["name"], r["status"], r["created_at"][:16],
          *("(too long)" if k in r["omitted"] else _at(r["config"], k) for k in config_keys),
          ", ".join(f"{k}={v}" if v else k for k, v in r["tags"].items())] for r in page["runs"]],
    )  # fmt: skip


@runs.command("show")
@click.argument("run_id")
@_url
@_json
def show_run(run_id: str, url: str | None, as_json: bool) -> None:
    """A run: status, config, tags and the last value, min and max of each metric."""
    with _api(url) as api:
        run = api.get(f"/api/v1/runs/{run_id}").json()
    if as_json:
        click.echo(json.dumps(run))
        return
    click.echo(f"{run['name']} ({run['id']}) in {run['project']}: {run['status']}")
    click.echo(f"config: {json.dumps(run['config'], sort_keys=True)}")
    _table(
        ["metric", "points", "last step", "last", "min", "max"],
        [[m["key"], str(m["count"]), str(m["last_step"]), _fmt(m["last_value"]), _fmt(m["min"]),
          _fmt(m["max"])] for m in run["metrics"]],
    )  # fmt: skip


@runs.command("export")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output for CSV).")  # fmt: skip
@_url
def export_run(run_id: str, fmt: str, output: Path | None, url: str | None) -> None:
    """Every point of every metric of a run: key, step, time, value."""
    rows: list[tuple[str, int, float, Any]] = []
    with _api(url) as api:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        for metric in run["metrics"]:
            points = api.get(f"/api/v1/runs/{run_id}/metrics/{metric['key']}/points").json()
            rows += zip([metric["key"]] * len(points["steps"]), points["steps"],
                        points["times"], points["values"], strict=True)  # fmt: skip
    if fmt == "parquet":
        _parquet(rows, output)
        return
    handle = output.open("w", newline="") if output else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(["key", "step", "time", "value"])
        writer.writerows(rows)
    finally:
        if output:
            handle.close()


def _parquet(rows: list[tuple[str, int, float, Any]], output: Path | None) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise click.ClickException("Parquet needs pyarrow: pip install pyarrow") from None
    if output is None:
        raise click.ClickException("--output is required for Parquet")
    special = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
    keys, steps, times, values = zip(*rows, strict=True) if rows else ((), (), (), ())
    table = pa.table({
        "key": list(keys), "step": list(steps), "time": list(times),
        "value": [special.get(v, v) if isinstance(v, str) else v for v in values],
    })  # fmt: skip
    pq.write_table(table, output)
