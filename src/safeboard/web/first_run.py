"""What an empty page tells people about logging their first run: on the server's own
machine nothing is to be set up; from any other machine, ``safeboard login <URL>`` first
(with the server's public address, and what its certificate question means)."""

from __future__ import annotations

from safeboard.web.html import Markup, el, join

__all__ = ["first_run_snippet", "first_steps"]


def first_run_snippet(project: str) -> str:
    return "\n".join(
        (
            "import safeboard",
            "",
            f'run = safeboard.init(project="{project}", config={{"lr": 0.01}})',
            "for step in range(100):",
            '    run.log({"loss": 1 / (step + 1)}, step=step)',
            "run.finish()",
        )
    )


def _from_elsewhere(project: str, server_url: str, heading: str) -> Markup:
    return el(
        "div",
        el("h3", heading),
        el(
            "p",
            "Sign in once from a terminal: it asks for your user name and password and "
            "keeps an API key for this computer.",
        ),
        el("pre", el("code", f"safeboard login {server_url}")),
        el(
            "p",
            "If the server uses its own certificate authority (CA), the first sign-in shows "
            "the CA's SHA-256 fingerprint and asks whether to trust it. Compare it with the "
            "CA fingerprint your admin gives you (the line starting 'CA SHA256:' that the "
            "server prints when it starts, or `safeboard tls show`) and trust "
            "it only if the two are the same: a different one means something else answered "
            "in your server's place.",
        ),
        el("p", "Then log a run from Python:"),
        el("pre", el("code", first_run_snippet(project))),
        data_testid="login-hint",
    )


def first_steps(project: str, server_url: str, *, admin: bool | None) -> Markup:
    """Both ways for an admin (who may sit at the server's machine), the login way for
    everyone else. ``admin=None``: not known when rendered; the part for the server's
    machine is marked ``admin-only`` (hidden until the page's script learns the role)."""
    local = el(
        "div",
        el("h3", "On the server's machine"),
        el(
            "p",
            "As the user who runs the server, no configuration is needed: the SDK finds the "
            "server and a key in its data directory. Paste this into Python:",
        ),
        el("pre", el("code", first_run_snippet(project))),
        data_testid="local-hint",
        class_="admin-only" if admin is None else None,
        hidden=admin is None,
    )
    if admin is False:
        return _from_elsewhere(project, server_url, "Log runs from your machine")
    return join(local, _from_elsewhere(project, server_url, "From any other machine"))
