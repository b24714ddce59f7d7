"""Image series (issue 17): ``run.log_image(key, image, step)`` stores each image as an
artifact of kind ``image`` named ``key`` with its step (so S12 holds for them as for any
upload: server-made storage ids, the raster allow-list, sniffing). A key's series is the
run's ready image artifacts of that name that have a step; logged twice at one step, the
later one counts. The run page draws a panel per key with a step slider, the compare view
one key across runs; an image that completes is announced to the run's live streams
(``announce``), so an open page shows its step."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from fastapi import APIRouter, Query

from safeboard.artifacts.models import ArtifactRow
from safeboard.artifacts.repository import Artifact
from safeboard.artifacts.service import ArtifactService
from safeboard.auth.dependencies import requires_project
from safeboard.auth.permissions import Permission
from safeboard.auth.principal import Principal
from safeboard.events import EventBus, media_event
from safeboard.provision import provided
from safeboard.runs.access import run_for
from safeboard.schemas import Model
from safeboard.vocabulary import ArtifactKind, ArtifactState

__all__ = ["ImageKeysOut", "ImageSeriesOut", "announce", "router"]

MAX_SERIES_STEPS = 10_000
_a = cast(sa.Table, ArtifactRow.__table__)
_IMAGE = ArtifactKind.IMAGE.value
_READY = ArtifactState.READY.value

router = APIRouter(prefix="/api/v1/runs/{run_id}")


class ImageKeysOut(Model):
    """The run's image series: per key (the artifacts' name), its number of steps."""

    run_id: str
    images: dict[str, int]


class ImageStep(Model):
    step: int
    artifact_id: str


class ImageSeriesOut(Model):
    """A key's images in step order (at most ``MAX_SERIES_STEPS``, evenly spread);
    ``POST /api/v1/artifacts/{id}/preview`` gives each one's image."""

    key: str
    total_steps: int
    steps: list[ImageStep]


def announce(events: EventBus, artifact: Artifact) -> None:
    """When ``artifact`` is a series' image that just turned ready: its key and step to the
    run's live streams (best effort, after the upload's commit)."""
    if artifact.kind == _IMAGE and artifact.state == _READY and artifact.step is not None:
        images = {artifact.name: artifact.step}
        events.publish(media_event(artifact.project_id, artifact.run_id, images=images))


def _series() -> sa.ColumnElement[bool]:
    return sa.and_(_a.c.kind == _IMAGE, _a.c.state == _READY, _a.c.step.is_not(None))


@router.get("/images", response_model=ImageKeysOut)
def image_keys(
    run_id: str,
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ArtifactService = provided(ArtifactService),
) -> ImageKeysOut:
    """The run's image series keys, each with its number of steps."""
    with service.engine.connect() as conn:
        run_for(conn, principal, run_id, Permission.PROJECTS_READ)
        rows = conn.execute(
            sa.select(_a.c.name, sa.func.count(sa.distinct(_a.c.step)))
            .where(_a.c.run_id == run_id, _series())
            .group_by(_a.c.name)
            .order_by(_a.c.name)
        )
        return ImageKeysOut(run_id=run_id, images={str(k): int(n) for k, n in rows})


@router.get("/images/series", response_model=ImageSeriesOut)
def image_series(
    run_id: str,
    image: str = Query(..., min_length=1, max_length=500, description="The image key."),
    principal: Principal = requires_project(Permission.PROJECTS_READ),
    service: ArtifactService = provided(ArtifactService),
) -> ImageSeriesOut:
    """One key's images, one per step (the last logged at that step), in step order."""
    with service.engine.connect() as conn:
        run_for(conn, principal, run_id, Permission.PROJECTS_READ)
        rows = conn.execute(
            sa.select(_a.c.step, _a.c.id)
            .where(_a.c.run_id == run_id, _a.c.name == image, _series())
            .order_by(_a.c.step, _a.c.created_at, _a.c.id)
        ).all()
    last = {int(step): str(artifact_id) for step, artifact_id in rows}
    steps = sorted(last)
    if len(steps) > MAX_SERIES_STEPS:
        stride = len(steps) / MAX_SERIES_STEPS
        steps = [steps[int(i * stride)] for i in range(MAX_SERIES_STEPS - 1)] + [steps[-1]]
    return ImageSeriesOut(
        key=image, total_steps=len(last),
        steps=[ImageStep(step=s, artifact_id=last[s]) for s in steps],
    )  # fmt: skip
