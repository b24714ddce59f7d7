"""``safeboard projects list | create`` and ``safeboard runs list | show | export``: the tracking
data, from whichever server the SDK would use (login, environment, or the local one),
through the typed client (``safeboard.client.Client``)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from itertools import islice, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from safeboard.cli import trash_cmd
from safeboard.cli.options import connect, json_option, url_option

if TYPE_CHECKING:
    from safeboard.client import Client
    from safeboard.client.models import Points

__all__ = ["projects", "resolve_run", "runs"]

_SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def resolve_run(client: Client, given: str) -> str:
    """A run id as printed (whole, or any unique prefix) -> the whole id."""
    from safeboard.cli.ids import resolve

    return resolve("run", given, lambda prefix, limit: client.run_ids(prefix, limit=limit))


def _time(value: Any) -> str:
    return "" if value is None else value.isoformat(sep=" ", timespec="minutes")[:16]


@click.group()
def projects() -> None:
    """Projects you can see."""


@projects.command("list")
@url_option
@json_option
def list_projects(url: str | None, as_json: bool) -> None:
    """Projects with their run counts and your role in each."""
    from safeboard.cli.output import json_lines, table

    with connect(url) as client:
        found = client.projects()
    if as_json:
        json_lines(p.to_json() for p in found)
        return
    table(
        ["project", "runs", "last run", "your role", "created", "description"],
        [[p.name, str(p.runs), _time(p.last_run_at), p.role.value if p.role else "(admin)",
          _time(p.created_at), p.description] for p in found],
        no_wrap=["project", "last run", "created"], empty="no projects",
    )  # fmt: skip


@projects.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the project is for (shown in lists).")
@url_option
@json_option
def create_project(name: str, description: str, url: str | None, as_json: bool) -> None:
    """Create project NAME; you become its owner. (A run logged with
    ``safeboard.init(project=NAME)`` creates it too; a task needs it first.)"""
    with connect(url) as client:
        made = client.create_project(name, description)
    if as_json:
        click.echo(json.dumps(made.to_json()))
        return
    click.echo(f"project {made.name} created; you are its owner")


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
@click.option("--filter", "filter_text", metavar="EXPR", default=None,
              help='The dashboard\'s search: params.lr > 0.01 and tags.model = "resnet" '
                   "and status = finished.")  # fmt: skip
@click.option("--sort", default=None, metavar="KEY",
              help="created (default: newest first), ended, name, status, params.<path>, "
                   "tags.<key>, metrics.<key> (last value); runs without one last.")  # fmt: skip
@click.option("--desc/--asc", default=True,
              help="Largest (newest) first, the default (as the API, the dashboard's first "
                   "click and Client.runs sort); --asc: smallest first.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--config", "config_keys", multiple=True, metavar="PATH",
              help="A config value to show (dotted path: opt.lr); repeat for more.")  # fmt: skip
@url_option
@json_option
def list_runs(
    project: str,
    filter_text: str | None,
    sort: str | None,
    desc: bool,
    limit: int,
    config_keys: tuple[str, ...],
    url: str | None,
    as_json: bool,
) -> None:
    """A project's runs: the newest first, or sorted by --sort as on the dashboard
    (largest first; --asc: smallest first), matching --filter. The value sorted by is
    shown: a metrics.<key> sort as a column (and "sort_metric" in --json), a
    params.<path> sort as that config column."""
    from safeboard.cli.output import json_lines, table

    page_size = min(limit, 500)
    shown_keys = config_keys
    if sort is not None and sort.startswith("params.") and sort[7:] not in config_keys:
        shown_keys = (*config_keys, sort[7:])
    metric = sort[8:] if sort is not None and sort.startswith("metrics.") else None
    with connect(url) as client:
        listing = client.runs(project, filter=filter_text, sort=sort or "created",
                              descending=desc, config_keys=shown_keys,
                              page_size=page_size)  # fmt: skip
        found = list(islice(listing, limit))
    if as_json:
        json_lines(_listed_json(r.to_json(), bool(shown_keys), metric) for r in found)
        return
    metric_column = [sort] if metric is not None and sort is not None else []
    table(
        ["run", "name", "status", "created", *metric_column, *shown_keys, "tags"],
        [[r.id[:12], r.name, r.status.value, _time(r.created_at),
          *([_fmt(r.metrics.get(metric, ""))] if metric is not None else []),
          *("(too long)" if k in r.omitted else _at(r.config, k) for k in shown_keys),
          ", ".join(f"{k}={v}" if v else k for k, v in r.tags.items())] for r in found],
        no_wrap=["run", "created", *metric_column], empty="no runs match",
    )  # fmt: skip


def _listed_json(row: dict[str, Any], with_config: bool, metric: str | None) -> dict[str, Any]:
    """A listed run for --json: its config only when --config asked for paths (a list
    carries no other config: an empty ``{}`` would read as "none"), the last value of the
    metric sorted by (if any) as ``sort_metric``."""
    if not with_config:
        row.pop("config", None)
        row.pop("omitted", None)
    metrics = row.pop("metrics", {})
    if metric is not None:
        row["sort_metric"] = metrics.get(metric)
    return row


@runs.command("show")
@click.argument("run_id")
@url_option
@json_option
def show_run(run_id: str, url: str | None, as_json: bool) -> None:
    """A run (id as printed: any unique prefix): status, config, tags and the last value,
    min and max of each metric."""
    from safeboard.cli.output import count, table

    with connect(url) as client:
        run = client.run(resolve_run(client, run_id))
    if as_json:
        click.echo(json.dumps(run.to_json()))
        return
    click.echo(f"{run.name} ({run.id}) in {run.project}: {run.status.value}")
    click.echo(f"config: {json.dumps(run.config, sort_keys=True)}")
    table(
        ["metric", "points", "last step", "last", "min", "max"],
        [[m.key, count(m.count, "point"), str(m.last_step), _fmt(m.last_value), _fmt(m.min),
          _fmt(m.max)] for m in run.metrics],
        empty="no metrics",
    )  # fmt: skip


@runs.command("export")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output for CSV).")  # fmt: skip
@url_option
def export_run(run_id: str, fmt: str, output: Path | None, url: str | None) -> None:
    """Every point of every metric of a run: key, step, time, value. Written a metric at
    a time: the export holds one metric's points, not the run's."""
    if fmt == "parquet" and output is None:
        raise click.ClickException("--output is required for Parquet")
    with connect(url) as client:
        run = client.run(resolve_run(client, run_id))
        metrics = (client.points(run.id, metric.key) for metric in run.metrics)
        if fmt == "parquet" and output is not None:
            _parquet(metrics, output)
            return
        handle = output.open("w", newline="") if output else sys.stdout
        try:
            writer = csv.writer(handle)
            writer.writerow(["key", "step", "time", "value"])
            for points in metrics:
                writer.writerows(zip(repeat(points.key), points.steps, points.times,
                                     points.values))  # fmt: skip
        finally:
            if output:
                handle.close()


def _parquet(metrics: Iterable[Points], output: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise click.ClickException("Parquet needs pyarrow: pip install pyarrow") from None
    schema = pa.schema(
        [("key", pa.string()), ("step", pa.int64()), ("time", pa.float64()),
         ("value", pa.float64())]
    )  # fmt: skip
    with pq.ParquetWriter(output, schema) as writer:  # a row group per metric
        for points in metrics:
            writer.write_table(pa.table({
                "key": [points.key] * len(points.steps), "step": points.steps,
                "time": points.times,
                "value": [_SPECIAL.get(v, v) if isinstance(v, str) else v for v in points.values],
            }, schema=schema))  # fmt: skip


# The trash's commands (trash_cmd.py) live under these two groups.
for command in (trash_cmd.delete_runs, trash_cmd.restore_run, trash_cmd.purge_run,
                trash_cmd.trash):  # fmt: skip
    runs.add_command(command)
for command in (trash_cmd.retention, trash_cmd.rename_project, trash_cmd.delete_project,
                trash_cmd.restore_project, trash_cmd.purge_project):  # fmt: skip
    projects.add_command(command)
