"""API shapes for artifacts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from safeboard.content_types import allowed_type
from safeboard.schemas import Model, StrictModel

__all__ = ["ArtifactIdsOut", "ArtifactIn", "ArtifactListOut", "ArtifactOut", "PreviewOut"]

# = vocabulary.ArtifactKind (tests/unit/test_vocabulary.py)
Kind = Literal["file", "image", "model", "dataset", "table"]


def _encodable(name: str) -> str:
    name.encode("utf-8")  # a lone surrogate cannot be stored or sent back
    return name


Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Any text (metadata only: never a path on the server).",
    ),
    AfterValidator(_encodable),
]
# A well-formed type outside the allow-list is stored as application/octet-stream.
ContentType = Annotated[
    str,
    Field(max_length=100, pattern=r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$"),
    AfterValidator(allowed_type),
]


class ArtifactIn(StrictModel):
    """Declare an upload: the bytes follow with PUT .../content."""

    name: Name
    kind: Kind = "file"
    size: int = Field(ge=0, le=2**62, description="Bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Lowercase hex.")
    content_type: ContentType = "application/octet-stream"
    step: int | None = Field(None, ge=0, le=2**62, description="For images logged per step.")
    upload_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Declaring the same upload id again returns the same artifact (resume).",
    )


class ArtifactOut(Model):
    id: str
    run_id: str
    name: str
    kind: str
    content_type: str
    size: int
    sha256: str
    step: int | None
    state: Literal["uploading", "ready"]
    received: int = Field(description="Bytes stored; an upload resumes from here.")
    created_by: str | None
    created_at: datetime
    ready_at: datetime | None


class ArtifactListOut(Model):
    items: list[ArtifactOut]
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page.")
    total: int = Field(description="How many artifacts the run holds, over all pages.")


class PreviewOut(Model):
    url: str = Field(description="Path on this server, usable without other credentials.")
    expires_at: datetime


class ArtifactIdsOut(Model):
    ids: list[str] = Field(description="Sorted; more than one: the prefix is ambiguous.")
