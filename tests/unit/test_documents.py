"""The bounds on a run's documents (safeboard/documents.py): inclusive at each bound, an
answer rather than an exception for any input, however deep."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from safeboard.documents import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_STRING_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS,
    document_problem,
    encoded_size,
    tags_problem,
)


def deep(levels: int, leaf: Any = 1) -> dict[str, Any]:
    document: Any = leaf
    for _ in range(levels):
        document = {"a": document}
    return dict(document)


def test_each_bound_is_inclusive() -> None:
    assert document_problem(deep(MAX_DEPTH)) is None
    assert (
        document_problem(deep(MAX_DEPTH + 1))
        == f"config{'.a' * MAX_DEPTH}: nested deeper than 32 levels"
    )
    assert document_problem({"l": [[[]]]}) is None
    assert "nested deeper" in (document_problem(deep(MAX_DEPTH - 1, [[]])) or "")
    assert document_problem({"k" * MAX_KEY_CHARS: 1}) is None
    assert document_problem({"k" * (MAX_KEY_CHARS + 1): 1}) is not None
    assert document_problem({"s": "x" * MAX_STRING_CHARS}) is None
    assert document_problem({"s": "x" * (MAX_STRING_CHARS + 1)}) == (
        "config.s: a string longer than 65536 characters"
    )
    assert document_problem({f"k{i}": 0 for i in range(MAX_KEYS)}) is None
    nested_keys = {"a": {f"k{i}": 0 for i in range(MAX_KEYS)}}  # counted at every level
    assert document_problem(nested_keys) == "config: more than 10000 keys"


def test_the_size_is_that_of_compact_utf8_json() -> None:
    fill = MAX_DOCUMENT_BYTES - len('{"s":""}')
    assert encoded_size({"s": "x" * fill}) == MAX_DOCUMENT_BYTES
    # four strings of nearly the longest kind fill the bound; a little more passes it
    at = {f"s{i}": "x" * (MAX_STRING_CHARS - 9) for i in range(4)}
    assert document_problem(at) is None
    assert "bytes as JSON" in (document_problem(at | {"t": "é" * 100}) or "")


def test_values_that_json_cannot_hold_are_named() -> None:
    assert document_problem({"lr": float("nan")}) == "config.lr: numbers must be finite"
    assert document_problem({"x": {1, 2}}, "system") is not None
    assert document_problem([1, 2]) == "config: a JSON object"
    assert document_problem({"n": 10**5000}) == "config: a number too long to store"


def test_any_depth_gives_an_answer_not_a_recursion_error() -> None:
    document: Any = 1
    for _ in range(200_000):
        document = [document]
    assert "nested deeper" in (document_problem({"x": document}) or "")


def test_tags_are_counted_after_removals() -> None:
    tags: dict[str, str | None] = {f"t{i}": "" for i in range(MAX_TAGS)}
    assert tags_problem(tags) is None
    assert tags_problem(tags | {"one": "more"}) == "tags: more than 100 tags on a run"
    assert tags_problem(tags | {"one": "more", "t0": None}) is None
    assert tags_problem({"t": "v" * (MAX_TAG_VALUE_CHARS + 1)}) is not None
    together = {f"t{i:02d}": "v" * 97 for i in range(MAX_TAGS)}  # 10,000 characters
    assert tags_problem(together) is None
    assert tags_problem(together | {"t00": "v" * 98}) == (
        "tags: 10001 characters of keys and values, more than 10000"
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)


@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4))
@settings(max_examples=200, deadline=None)
def test_every_document_gets_an_answer(document: dict[str, Any]) -> None:
    problem = document_problem(document)
    assert problem is None or problem.startswith("config")
