"""``GET /metrics`` (issue 18, "Metrics for monitoring"): Prometheus' text format for a key
of the dedicated metrics scope, and for no other credential; what it counts is what
happened, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from safeboard.auth.permissions import Role, Scope
from safeboard.errors import Forbidden, InvalidRequest
from safeboard.settings import Settings
from tests.integration.identity_world import World, build_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[World]:
    built = build_world(make_settings, db_url)
    built.user("admin", Role.ADMIN)
    built.user("olga")
    yield built
    await built.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(world: World, token: str) -> httpx.Response:
    return await world.client(Authorization=f"Bearer {token}").get("/metrics")


async def test_a_scrape_key_reads_what_happened(world: World) -> None:
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.WRITE)}")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    run = (await olga.post("/api/v1/projects/mnist/runs", json={"name": "a"})).json()["id"]
    points = {"batch_id": "0" * 32, "metrics": {"loss": {"steps": [0, 1, 2], "times": [1.7e9] * 3,
              "values": [1.0, 0.5, 0.25]}}}  # fmt: skip
    for _ in range(2):  # the second is a retry: acknowledged, not stored
        stored = await olga.post(f"/api/v1/runs/{run}/metrics", json=points)
        assert stored.status_code in (200, 201), stored.text
    assert (await olga.get("/api/v1/runs/nonexistent0000000000000000000000")).status_code == 404
    assert (await olga.get("/no/such/path/at/all")).status_code == 404

    answer = await scrape(world, world.key("admin", Scope.METRICS))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found = samples(answer.text)
    assert found[("safeboard_ingest_batches_total", ())] == 1
    assert found[("safeboard_ingest_points_total", ())] == 3
    assert found[("safeboard_ingest_duplicate_batches_total", ())] == 1
    ingest = (("method", "POST"), ("route", "/api/v1/runs/{run_id}/metrics"), ("status", "201"))
    statuses = {labels: value for (name, labels), value in found.items()
                if name == "safeboard_http_requests_total"}  # fmt: skip
    assert sum(v for k, v in statuses.items() if k[1:2] == ingest[1:2]) == 2
    # Routes by template, and one label for paths no route serves: no label per path.
    assert any(dict(k)["route"] == "/api/v1/runs/{run_id}" and dict(k)["status"] == "404"
               for k in statuses)  # fmt: skip
    assert any(dict(k)["route"] == "(unmatched)" for k in statuses)
    assert not any("no/such" in dict(k)["route"] for k in statuses)
    assert found[("safeboard_event_streams_open", ())] == 0
    assert ("safeboard_http_request_duration_seconds_count",
            (("method", "POST"), ("route", "/api/v1/runs/{run_id}/metrics"))) in found  # fmt: skip


async def test_tasks_and_artifacts_are_read_at_each_scrape(world: World) -> None:
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.WRITE)}")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    submitted = await olga.post(
        "/api/v1/projects/mnist/tasks", json={"command": ["python", "train.py"]}
    )
    assert submitted.status_code == 201, submitted.text
    found = samples((await scrape(world, world.key("admin", Scope.METRICS))).text)
    assert found[("safeboard_tasks", (("state", "queued"),))] == 1


async def test_no_other_credential_reads_the_metrics(world: World) -> None:
    for scope in (Scope.READ, Scope.WRITE, Scope.ADMIN):
        refused = await scrape(world, world.key("admin", scope))
        assert refused.status_code == 403, (scope, refused.text)
        assert "metrics scope" in refused.json()["error"]["message"]
    assert (await world.client().get("/metrics")).status_code == 401
    session, _ = await world.signed_in("admin")
    assert (await session.get("/metrics")).status_code == 403


async def test_a_scrape_key_reads_nothing_else(world: World) -> None:
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.WRITE)}")
    assert (await olga.post("/api/v1/projects", json={"name": "mnist"})).status_code == 201
    scraper = world.client(Authorization=f"Bearer {world.key('admin', Scope.METRICS)}")
    for path in ("/api/v1/auth/session", "/api/v1/projects", "/api/v1/projects/mnist/runs",
                 "/api/v1/users", "/api/v1/audit", "/api/v1/agents"):  # fmt: skip
        assert (await scraper.get(path)).status_code == 403, path
    made = await scraper.post("/api/v1/projects", json={"name": "mine"})
    assert made.status_code == 403


async def test_only_admins_make_scrape_keys(world: World) -> None:
    with pytest.raises(Forbidden, match="only admins"):
        world.key("olga", Scope.METRICS)
    olga = world.client(Authorization=f"Bearer {world.key('olga', Scope.ADMIN)}")
    made = await olga.post("/api/v1/keys", json={"name": "scrape", "scope": "metrics"})
    assert made.status_code == 403, made.text
    admin = world.client(Authorization=f"Bearer {world.key('admin', Scope.WRITE)}")
    made = await admin.post("/api/v1/projects", json={"name": "p"})
    assert made.status_code == 201
    with pytest.raises(InvalidRequest, match="no project"):
        world.key("admin", Scope.METRICS, project_id=made.json()["id"])
