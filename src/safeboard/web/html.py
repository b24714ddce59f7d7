"""HTML built from Python values, escaped by construction.

``el("td", run.name)`` escapes the name; only ``Markup`` (what ``el`` returns) passes
unescaped. There is no way to write a ``style`` or ``on...`` attribute: the CSP forbids
inline style and script, so markup that needs them is a bug caught where it is written.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import TypeAlias

__all__ = ["Child", "Markup", "el", "escape", "join"]


class Markup(str):
    """Text that is already HTML (made by this module)."""

    __slots__ = ()


Child: TypeAlias = "Markup | str | int | float | Iterable[Child] | None"

VOID = frozenset({"br", "col", "hr", "img", "input", "link", "meta", "source", "wbr"})


def escape(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def join(*children: Child) -> Markup:
    parts: list[str] = []
    _flatten(children, parts)
    return Markup("".join(parts))


def _flatten(child: Child, into: list[str]) -> None:
    if child is None or child is False:
        return
    if isinstance(child, str | int | float):
        into.append(escape(child))
        return
    for item in child:
        _flatten(item, into)


def _attribute(name: str, value: object) -> str:
    name = name.rstrip("_").replace("_", "-")  # class_ -> class, data_testid -> data-testid
    lowered = name.lower()
    if lowered == "style" or lowered.startswith("on") or not name.replace("-", "").isalnum():
        raise ValueError(f"attribute {name!r} is not allowed (CSP: no inline style or script)")
    if value is True:
        return f" {name}"
    return f' {name}="{escape(value)}"'


def el(tag: str, *children: Child, **attributes: object) -> Markup:
    """One element; attributes that are None or False are left out."""
    attrs = "".join(
        _attribute(name, value)
        for name, value in attributes.items()
        if value is not None and value is not False
    )
    if tag in VOID:
        return Markup(f"<{tag}{attrs}>")
    return Markup(f"<{tag}{attrs}>{join(*children)}</{tag}>")
