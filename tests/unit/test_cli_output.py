"""The CLI's words and ids: plurals agree with their numbers; an id as printed resolves
whole, by a unique prefix, or names the candidates of an ambiguous one."""

from __future__ import annotations

import pytest

from safeboard.cli.ids import pick, resolve
from safeboard.cli.output import count, plural
from safeboard.errors import BadRequest, NotFound


def test_plurals() -> None:
    assert count(1, "point") == "1 point"
    assert count(0, "point") == "0 points"
    assert count(2_500, "entry", "entries") == "2,500 entries"
    assert plural(1, "session") == "session"


def test_a_whole_id_needs_no_lookup() -> None:
    def lookup(prefix: str, limit: int) -> list[str]:
        raise AssertionError("no lookup for a whole id")

    assert resolve("run", "A" * 32, lookup) == "a" * 32


def test_prefixes() -> None:
    ids = ["abc1" + "0" * 28, "abc2" + "0" * 28]

    def lookup(prefix: str, limit: int) -> list[str]:
        return [i for i in ids if i.startswith(prefix)][:limit]

    assert resolve("run", "abc2", lookup) == ids[1]
    with pytest.raises(BadRequest, match="ambiguous") as ambiguous:
        resolve("run", "abc", lookup)
    assert all(i in ambiguous.value.message for i in ids)
    with pytest.raises(NotFound, match="no run 'fff'"):
        resolve("run", "fff", lookup)
    with pytest.raises(BadRequest, match="not a run id"):
        resolve("run", "../etc", lookup)


def test_many_candidates_are_cut_short() -> None:
    with pytest.raises(BadRequest, match="and more"):
        pick("artifact", "a", [f"a{i:031x}" for i in range(11)])
