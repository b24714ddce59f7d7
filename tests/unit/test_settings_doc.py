"""docs/settings.md is generated from the settings' descriptions and must not drift."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from safeboard.settings import Settings
from safeboard.settings_doc import render_settings_doc

DOC = Path(__file__).parents[2] / "docs" / "settings.md"


def test_settings_doc_is_current() -> None:
    assert DOC.read_text() == render_settings_doc(), (
        "docs/settings.md is stale: run `safeboard config docs > docs/settings.md`"
    )


def test_every_setting_has_a_description() -> None:
    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not (field.description or "").strip():
                missing.append(prefix + name)
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                missing += walk(annotation, f"{prefix}{name}.")
        return missing

    assert walk(Settings, "") == []
