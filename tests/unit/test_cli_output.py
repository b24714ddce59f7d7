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


@pytest.mark.parametrize("width", [80, 100])
def test_a_table_splits_no_header_id_or_short_word(
    width: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from safeboard.cli.output import table

    monkeypatch.setenv("COLUMNS", str(width))
    headers = ["key", "name", "owner", "scope", "project", "expires", "last used", "state"]
    rows = [["418b26fc323d", "a key for the nightly cluster jobs", "reviewer", "write", "all",
             "2027-03-01", "2026-12-04 23:10", "revoked"]]  # fmt: skip
    table(headers, rows, no_wrap=["key", "expires"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= width, out
    for word in [*headers, "418b26fc323d", "reviewer", "revoked", "nightly", "cluster"]:
        assert word in out, f"{word!r} split in:\n{out}"


def test_a_tuple_cell_is_lines_each_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from safeboard.cli.output import table

    table(["actor"], [[("user:", "eve\nforged row")]], width=40)
    out = capsys.readouterr().out
    assert "eve\\nforged row" in out  # a stored newline starts no line of its own
    assert any(line.strip("│ ") == "user:" for line in out.splitlines())
