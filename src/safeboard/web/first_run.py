"""What an empty page tells people about logging their first run: on the server's own
machine nothing is to be set up; from any other machine, ``safeboard login <URL>`` first
(with the server's public address, and what its certificate question means). A server
that listens on this machine only says so, and how to open it to others, rather than
hand out a login command that no other machine could use."""

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


def _this_machine_only() -> Markup:
    return el(
        "div",
        el("h3", "From other machines"),
        el(
            "p",
            "This server listens on this machine only (a loopback address): other machines "
            "cannot reach it. An admin opens it to the team by starting it on every "
            "interface, which turns HTTPS on by itself (with a generated certificate) and "
            "keeps sign-in mandatory:",
        ),
        el("pre", el("code", "safeboard server --host 0.0.0.0")),
        el(
            "p",
            "Teammates are then invited with `safeboard user invite NAME` and sign in with "
            "`safeboard login https://<this machine's name>:8443`.",
        ),
        data_testid="loopback-hint",
    )


def first_steps(project: str, server_url: str, *, admin: bool | None, reachable: bool) -> Markup:
    """Both ways for an admin (who may sit at the server's machine), the login way for
    everyone else. ``admin=None``: not known when rendered; the part for the server's
    machine is marked ``admin-only`` (hidden until the page's script learns the role).
    ``reachable``: whether other machines can reach the server; when not, the login way
    is for other users of this machine, and the page says how to open it to others."""
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
    if not reachable:  # the login way works for the other users of this machine only
        mine = admin is False
        heading = "Log runs from your account" if mine else "As another user of this machine"
        here = _from_elsewhere(project, server_url, heading)
        return join(None if mine else local, here, _this_machine_only())
    if admin is False:
        return _from_elsewhere(project, server_url, "Log runs from your machine")
    return join(local, _from_elsewhere(project, server_url, "From any other machine"))
