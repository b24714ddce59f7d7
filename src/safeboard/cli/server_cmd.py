"""``safeboard server``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir

__all__ = ["server"]


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, ())}


@click.command()
@data_dir_option
@click.option(
    "--host", default=None, help="Address to bind (default 127.0.0.1). Off loopback, TLS turns on."
)
@click.option("--port", type=int, default=None, help="Port (default 8443 with TLS, 8080 without).")
@click.option(
    "--tls/--no-tls",
    "tls_enabled",
    default=None,
    help="Force HTTPS on or off (off is refused off loopback without --behind-proxy).",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path),
    default=None,
    help="PEM certificate (chain) to serve.",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path),
    default=None,
    help="PEM private key for --tls-cert.",
)
@click.option(
    "--tls-san",
    multiple=True,
    help="Extra name or address for the generated certificate (repeatable).",
)
@click.option(
    "--tls-profile",
    type=click.Choice(["intermediate", "modern"]),
    default=None,
    help="Mozilla TLS profile (modern: TLS 1.3 only).",
)
@click.option(
    "--behind-proxy",
    default=None,
    metavar="CIDR,...",
    help="Reverse proxies whose X-Forwarded-* headers are trusted.",
)
@click.option(
    "--allowed-host", multiple=True, help="Extra name accepted in the Host header (repeatable)."
)
@click.option(
    "--database-url", default=None, help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db."
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def server(
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    tls_enabled: bool | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_san: tuple[str, ...],
    tls_profile: str | None,
    behind_proxy: str | None,
    allowed_host: tuple[str, ...],
    database_url: str | None,
    log_level: str | None,
) -> None:
    """Start the server: API, dashboard and file server on one port."""
    from safeboard.server.run import prepare, serve

    overrides = {
        "server": _given(
            host=host,
            port=port,
            behind_proxy=behind_proxy,
            allowed_hosts=list(allowed_host) or None,
            log_level=log_level,
        ),
        "tls": _given(
            enabled=tls_enabled,
            cert=tls_cert,
            key=tls_key,
            san=list(tls_san) or None,
            profile=tls_profile,
        ),
        "database": _given(url=database_url),
    }
    prepared = prepare(resolve_data_dir(data_dir), **{k: v for k, v in overrides.items() if v})
    serve(prepared, echo=lambda line: click.echo(line, err=True))
