"""Where a command reads a password: standard input with ``--password-stdin``, else a
prompt on a terminal, else nowhere. Without a terminal the prompt would fall back to
reading the pipe with echo on (Python's GetPassWarning), so the command refuses instead."""

from __future__ import annotations

import sys

import click

from safeboard.errors import BadRequest

__all__ = ["read_password"]


def read_password(prompt: str, password_stdin: bool, *, twice: bool = False) -> str:
    """The password: one line of stdin, or typed (not echoed; ``twice``: confirmed)."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadRequest("no terminal to ask for the password: pass --password-stdin")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=twice))
