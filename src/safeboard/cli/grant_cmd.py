"""``safeboard grant PROJECT USER [ROLE]`` and ``safeboard revoke PROJECT USER``: who may
do what in a project, through the API (as the project's owner or an admin, with a key of
admin scope), from whichever server the SDK would use."""

from __future__ import annotations

import click

from safeboard.cli.options import connect, url_option
from safeboard.vocabulary import ProjectRole

__all__ = ["grant", "revoke"]

_MEANS = {
    ProjectRole.VIEWER: "may view its runs",
    ProjectRole.EDITOR: "may view and log runs",
    ProjectRole.OWNER: "may view, log runs and manage who has access",
}


@click.command()
@click.argument("project")
@click.argument("username")
@click.argument(
    "role",
    type=click.Choice([r.value for r in ProjectRole]),
    default=ProjectRole.VIEWER.value,
    metavar="[ROLE]",
)
@url_option
def grant(project: str, username: str, role: str, url: str | None) -> None:
    """Give USERNAME a ROLE in PROJECT: viewer (the default), editor or owner. Replaces
    the role they had there."""
    chosen = ProjectRole(role)
    with connect(url) as client:
        client.grant(project, username, chosen)
    article = "an" if chosen.value[0] in "aeiou" else "a"
    click.echo(f"{username} is now {article} {chosen.value} of {project} ({_MEANS[chosen]})")


@click.command()
@click.argument("project")
@click.argument("username")
@url_option
def revoke(project: str, username: str, url: str | None) -> None:
    """Take away USERNAME's role in PROJECT (an admin still sees every project). Fails,
    saying so, when they had none there."""
    with connect(url) as client:
        client.revoke(project, username)
    click.echo(f"{username} no longer has a role in {project}")
