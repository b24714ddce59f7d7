"""``safeboard runs delete | restore | purge | trash`` and ``safeboard projects
retention``: deleting runs to their project's trash, taking them back, purging them, and
a project's retention (docs/operations.md, "Deletion and retention")."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from safeboard.cli.options import connect, json_option, url_option

if TYPE_CHECKING:
    from safeboard.client import Client

__all__ = [
    "delete_project",
    "delete_runs",
    "purge_project",
    "purge_run",
    "rename_project",
    "restore_project",
    "restore_run",
    "retention",
    "trash",
]

_API = "/api/v1"


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _project(name: str) -> str:
    """``/projects/NAME`` under the API (client.paths: a name no project can have is
    refused before it is sent)."""
    from safeboard.client import paths

    return paths.project(name).removeprefix(_API)


def _call(client: Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.send(method, _API + path, idempotent=False, **kwargs).json()
    return answer


def _whole_id(given: str) -> str:
    from safeboard.vocabulary import is_id

    if not is_id(given):
        raise click.UsageError(
            f"{given!r}: give the run's whole id (a run in the trash has no short id; "
            "`safeboard runs trash --project P` lists them)"
        )
    return given


def _confirm(question: str, yes: bool) -> None:
    if not yes:
        click.confirm(question, abort=True, err=True)


def _plural(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"


@click.command("delete")
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option("--project", default=None, help="With --filter: the project whose runs go.")
@click.option("--filter", "filter_text", metavar="EXPR", default=None,
              help="Delete every run of --project that matches (the language of "
                   "`safeboard runs list --filter`); the count is shown first.")  # fmt: skip
@click.option("--purge", is_flag=True, help="Purge at once (no trash, no restore).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@url_option
@json_option
def delete_runs(
    run_ids: tuple[str, ...], project: str | None, filter_text: str | None, purge: bool,
    yes: bool, url: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Move runs to their project's trash: by id (whole or a unique prefix), or every run
    of --project matching --filter. They are hidden at once and purged after the
    project's retention period; `safeboard runs restore` takes one back meanwhile."""
    from safeboard.cli.runs_cmd import resolve_run

    if bool(run_ids) == (filter_text is not None or project is not None):
        raise click.UsageError("give RUN_IDs, or --project with --filter (not both)")
    if project is not None and filter_text is None:
        raise click.UsageError("--project needs --filter EXPR (the runs to delete)")
    if filter_text is not None and project is None:
        raise click.UsageError("--filter needs --project")

    def question(runs: str) -> str:
        return f"Purge {runs} for good?" if purge else f"Move {runs} to the trash?"

    with connect(url) as client:
        if run_ids:
            ids = [resolve_run(client, given) for given in run_ids]
            _confirm(question(_plural(len(ids))), yes)
            done = [_call(client, "DELETE", f"/runs/{_segment(i)}",
                          params={"purge": "true" if purge else "false"}) for i in ids]  # fmt: skip
            moved = [run for answer in done for run in answer["run_ids"]]
            cancelled = [task for answer in done for task in answer["cancelled_tasks"]]
        else:
            assert project is not None  # noqa: S101  (checked above)
            path = f"{_project(project)}/runs/delete"
            counted = _call(client, "POST", path, json={"filter": filter_text, "dry_run": True})
            if counted["count"] == 0:
                click.echo(f"no run of {project} matches", err=True)
                return
            _confirm(question(f"{_plural(counted['count'])} of {project}"), yes)
            answer = _call(client, "POST", path, json={"filter": filter_text, "purge": purge})
            moved, cancelled = answer["run_ids"], answer["cancelled_tasks"]
    if as_json:
        click.echo(json.dumps({"run_ids": moved, "purged": purge,
                               "cancelled_tasks": cancelled}))  # fmt: skip
        return
    for task in cancelled:
        click.echo(f"task {task} cancelled (it ran a deleted run)")
    click.echo(f"{_plural(len(moved))} {'purged' if purge else 'moved to the trash'}")


@click.command("restore")
@click.argument("run_id")
@url_option
def restore_run(run_id: str, url: str | None) -> None:
    """Take RUN_ID (its whole id) out of its project's trash."""
    with connect(url) as client:
        _call(client, "POST", f"/runs/{_segment(_whole_id(run_id))}/restore")
    click.echo(f"run {run_id} restored")


@click.command("purge")
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@url_option
def purge_run(run_id: str, yes: bool, url: str | None) -> None:
    """Purge RUN_ID (in the trash; its whole id) now: its metrics, artifacts and rows go
    for good."""
    run_id = _whole_id(run_id)
    _confirm(f"Purge run {run_id} for good?", yes)
    with connect(url) as client:
        _call(client, "POST", f"/runs/{_segment(run_id)}/purge")
    click.echo(f"run {run_id} purged")


@click.command("trash")
@click.option("--project", required=True)
@url_option
@json_option
def trash(project: str, url: str | None, as_json: bool) -> None:
    """A project's trash: deleted runs, who deleted them and when they will be purged."""
    from safeboard.cli.output import json_lines, table

    with connect(url) as client:
        found = client.send("GET", f"{_API}{_project(project)}/trash").json()
    if as_json:
        json_lines(found["runs"])
        return
    table(
        ["id", "name", "status", "deleted", "by", "purged after"],
        [[r["id"], r["name"], r["status"], r["deleted_at"][:16], r["deleted_by"],
          r["purge_after"][:16]] for r in found["runs"]],
        no_wrap=["id", "deleted", "purged after"], empty=f"the trash of {project} is empty",
    )  # fmt: skip


def _days(text: str | None, none_word: str) -> int | str | None:
    if text is None:
        return "keep"
    if text == none_word:
        return None
    if not text.isdigit():
        raise click.BadParameter(f"a number of days, or {none_word!r}")
    return int(text)


@click.command("retention")
@click.argument("project")
@click.option("--trash-days", default=None, metavar="N|default",
              help="Purge the trash after N days ('default': the server's setting).")  # fmt: skip
@click.option("--max-run-age-days", default=None, metavar="N|never",
              help="Move runs older than N days to the trash ('never': keep them).")  # fmt: skip
@url_option
@json_option
def retention(
    project: str, trash_days: str | None, max_run_age_days: str | None, url: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Show PROJECT's retention, or change it (its owners): --trash-days, --max-run-age-days."""
    trash_value = _days(trash_days, "default")
    age_value = _days(max_run_age_days, "never")
    path = f"{_API}{_project(project)}/retention"
    with connect(url) as client:
        found = client.send("GET", path).json()
        if trash_days is not None or max_run_age_days is not None:
            body = {
                "trash_days": found["trash_days"] if trash_value == "keep" else trash_value,
                "max_run_age_days": found["max_run_age_days"] if age_value == "keep"
                else age_value,
            }  # fmt: skip
            found = client.send("PUT", path, json=body).json()
    if as_json:
        click.echo(json.dumps(found))
        return
    age = found["max_run_age_days"]
    click.echo(f"{project}: the trash is purged after {found['effective_trash_days']} days"
               f"{'' if found['trash_days'] is not None else ' (the server default)'}; runs "
               + ("are kept whatever their age" if age is None
                  else f"older than {age} days move to the trash"))  # fmt: skip


@click.command("rename")
@click.argument("project")
@click.argument("new_name")
@url_option
def rename_project(project: str, new_name: str, url: str | None) -> None:
    """Rename PROJECT to NEW_NAME (its owners): runs, grants and keys bound to it follow."""
    with connect(url) as client:
        _call(client, "PATCH", _project(project), json={"name": new_name})
    click.echo(f"project {project} is now {new_name}")


@click.command("delete")
@click.argument("project")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@url_option
def delete_project(project: str, yes: bool, url: str | None) -> None:
    """Move PROJECT and its runs to the trash (its owners); `safeboard projects restore`
    takes it back until its retention period ends."""
    _confirm(f"Move project {project} and all its runs to the trash?", yes)
    with connect(url) as client:
        done = _call(client, "DELETE", _project(project))
    click.echo(f"project {project} and {_plural(done['runs'])} moved to the trash")


@click.command("restore")
@click.argument("project")
@url_option
def restore_project(project: str, url: str | None) -> None:
    """Take PROJECT out of the trash with the runs that went with it."""
    with connect(url) as client:
        done = _call(client, "POST", f"{_project(project)}/restore")
    click.echo(f"project {project} restored with {_plural(done['runs'])}")


@click.command("purge")
@click.argument("project")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@url_option
def purge_project(project: str, yes: bool, url: str | None) -> None:
    """Delete PROJECT, which is in the trash, for good now with all its runs (its owners,
    admins); without this, the retention sweep purges it when its period ends."""
    _confirm(f"Delete project {project} and all its runs for good? This cannot be undone.", yes)
    with connect(url) as client:
        done = _call(client, "POST", f"{_project(project)}/purge")
    click.echo(f"project {project} and {_plural(done['runs'])} deleted for good")
