"""The SDK refuses what the server would refuse for good (safeboard/documents.py) when the
training script asks, with the server's message, and spools none of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import safeboard
from safeboard.documents import MAX_DEPTH, MAX_NOTES_CHARS, MAX_STRING_CHARS, MAX_TAGS
from safeboard.errors import InvalidRequest
from safeboard.ids import is_id


def deep(levels: int) -> dict[str, Any]:
    document: Any = 1
    for _ in range(levels):
        document = {"a": document}
    return dict(document)


def test_init_refuses_a_config_beyond_the_bounds_and_spools_nothing(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for config, tags, message in (
        (deep(MAX_DEPTH + 1), None, "config.a"),
        ({"prompt": "x" * (MAX_STRING_CHARS + 1)}, None, "config.prompt: a string longer"),
        ({}, [f"t{i}" for i in range(MAX_TAGS + 1)], "more than 100 tags"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            safeboard.init("p", config=config, tags=tags, mode="offline", spool_dir=spool)
    assert not spool.exists() or not any(spool.iterdir())


def test_later_changes_beyond_the_bounds_raise_and_change_nothing(tmp_path: Path) -> None:
    run = safeboard.init("p", config={"lr": 0.1}, mode="offline", spool_dir=tmp_path)
    try:
        big = {f"s{i}": "x" * MAX_STRING_CHARS for i in range(2)}
        run.log_params(big)  # within the bounds alone ...
        with pytest.raises(InvalidRequest, match="bytes as JSON"):
            run.log_params({f"t{i}": "x" * MAX_STRING_CHARS for i in range(2)})  # ... not twice
        with pytest.raises(InvalidRequest, match="nested deeper"):
            run.log_params({"model": deep(MAX_DEPTH)})
        run.set_tags([f"t{i}" for i in range(MAX_TAGS)])
        with pytest.raises(InvalidRequest, match="more than 100 tags"):
            run.set_tags(["one-more"])
        with pytest.raises(InvalidRequest, match="notes"):
            run.set_notes("n" * (MAX_NOTES_CHARS + 1))
        meta = run.spool.read_meta()
        assert meta["config"] == {"lr": 0.1} | big
        assert len(meta["tags"]) == MAX_TAGS
    finally:
        run.finish()


def test_an_offline_run_gets_an_id_the_server_takes(tmp_path: Path) -> None:
    run = safeboard.init("p", mode="offline", spool_dir=tmp_path)
    try:
        assert is_id(run.id)
        assert run.spool.path.name == run.id
    finally:
        run.finish()
