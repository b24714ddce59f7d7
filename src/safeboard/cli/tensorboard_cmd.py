"""``safeboard tensorboard --logdir DIR``: TensorBoard over the server's TLS and login.

With a server running for the data directory, it asks that server (through its local
socket, with the discovery file's key) to open TensorBoard on the directory; otherwise it
starts the server on its embedded default, like ``safeboard server``, with the instance
open. Either way it prints a one-time link into TensorBoard's own origin.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir

__all__ = ["tensorboard"]

INSTALL = "TensorBoard is not installed: pip install 'safeboard[tensorboard]'"


@click.command()
@click.option(
    "--logdir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of event files (as for `tensorboard --logdir`).",
)
@data_dir_option
def tensorboard(logdir: Path, data_dir: Path | None) -> None:
    """TensorBoard on LOGDIR, behind the server's TLS and login; prints a one-time link."""
    from safeboard.tensorboards.supervisor import extra_installed

    if not extra_installed():
        click.echo(INSTALL, err=True)
        sys.exit(1)
    directory = resolve_data_dir(data_dir)
    logdir = logdir.resolve()
    if _server_running(directory):
        _attach(directory, logdir)
    else:
        _start(directory, logdir)


def _server_running(directory: Path) -> bool:
    from safeboard.datadir import LOCAL_SOCKET

    path = directory / LOCAL_SOCKET
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            return probe.connect_ex(str(path)) == 0
        except OSError:  # a path too long for a Unix socket address: not ours to judge
            return False


def _attach(directory: Path, logdir: Path) -> None:
    from safeboard.client.credentials import read_discovery
    from safeboard.errors import ConfigError

    access = read_discovery(directory)
    if access is None or access.api_key is None:
        raise ConfigError(f"the server of {directory} has no local key: restart it")
    with access.client() as client:
        opened = client.post("/api/v1/tensorboards", json={"logdir": str(logdir)}).json()
    click.echo(f"TensorBoard on {logdir} (the server of {directory}):")
    click.echo(f"  open {opened['link']}")
    click.echo("    (single use, valid 15 minutes; run this command again for a new link)")


def _start(directory: Path, logdir: Path) -> None:
    from safeboard.server.bootstrap import os_admin_name
    from safeboard.server.run import prepare, serve
    from safeboard.services import Services

    def opened(services: Services) -> None:
        admin = services.users.get(os_admin_name())
        board = services.tensorboards.open_logdir(admin.id, admin.username, logdir)
        click.echo(f"  TensorBoard on {logdir}:", err=True)
        click.echo(f"  open {board.link}", err=True)
        click.echo("    (single use, valid 15 minutes; Ctrl-C stops both)", err=True)

    prepared = prepare(directory)
    serve(prepared, echo=lambda line: click.echo(line, err=True), on_started=opened)
