"""safeboard.validation: pydantic's findings in a person's words, the place kept, the
input never echoed. Real models, validated for real."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safeboard.validation import NAME_PATTERN, RUN_ID_PATTERN, describe


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field("ok", pattern=NAME_PATTERN)
    run: str = Field("0" * 32, pattern=RUN_ID_PATTERN)
    count: int = Field(1, ge=1, le=10)
    label: str = Field("x", max_length=5)
    mode: Literal["online", "offline"] = "online"
    other: str = Field("x", pattern=r"^x+$")


NAME_WORDS = (
    "name: must be 1 to 100 letters, digits, dots, dashes or underscores, starting with a "
    "letter or digit"
)


def _said(**given: object) -> str:
    with pytest.raises(ValidationError) as raised:
        _Shape.model_validate(given)
    return describe(raised.value.errors())


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"name": "bad/name"}, NAME_WORDS),
        ({"run": "XYZ"}, "run: must be an id of 32 hexadecimal digits (0-9, a-f)"),
        ({"count": "7"}, "count: must be a whole number"),
        ({"count": 0}, "count: must be at least 1"),
        ({"count": 11}, "count: must be at most 10"),
        ({"label": "toolong"}, "label: must be at most 5 characters long"),
        ({"mode": "sideways"}, "mode: must be one of 'online' or 'offline'"),
        ({"extra": 1}, "extra: is not a field this request takes"),
        ({"count": 0, "label": "toolong"}, "count: must be at least 1 (and 1 more)"),
    ],
)  # fmt: skip
def test_common_findings_read_plainly(given: dict[str, object], said: str) -> None:
    assert _said(**given) == said


def test_a_pattern_without_words_falls_back_to_pydantic_and_never_echoes_input() -> None:
    said = _said(other="secret-value")
    assert said.startswith("other: String should match pattern")
    assert "secret-value" not in said
    assert describe([]) == "invalid request"
