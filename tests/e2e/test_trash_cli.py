"""``safeboard runs delete | restore | purge | trash`` and ``safeboard projects
retention`` as a subprocess against a real server over TLS (issue 18): bulk delete by
filter shows the count and asks (``--yes`` for scripts), restore brings a run back,
purge asks and removes it, retention shows and changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("trash-cli"))
    yield started
    started.stop()


def api(server: ServerProcess) -> httpx.Client:
    key = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
    client = server.client()
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def cli(server: ServerProcess, *args: str, ok: bool = True, stdin: str = "") -> Any:
    done = run_cli(*args, env={**cli_env(server.data_dir), "COLUMNS": "200"}, input=stdin or None)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def _listed(client: httpx.Client) -> list[str]:
    return sorted(r["name"] for r in client.get("/api/v1/projects/p/runs").json()["runs"])


def test_delete_by_filter_restore_purge_and_retention(server: ServerProcess) -> None:
    with api(server) as client:
        assert client.post("/api/v1/projects", json={"name": "p"}).status_code == 201
        ids = {}
        for name, lr in (("a", 0.001), ("b", 0.002), ("c", 0.5)):
            made = client.post("/api/v1/projects/p/runs", json={"name": name,
                                                                "config": {"lr": lr}})  # fmt: skip
            ids[name] = made.json()["id"]
        refused = cli(server, "runs", "delete", "--project", "p", "--filter", "params.lr < 0.01",
                      ok=False, stdin="n\n")  # fmt: skip
        assert refused.returncode != 0
        assert "2 runs of p" in refused.stderr
        assert _listed(client) == ["a", "b", "c"]

        done = cli(server, "runs", "delete", "--project", "p", "--filter", "params.lr < 0.01",
                   "--yes")  # fmt: skip
        assert "2 runs moved to the trash" in done.stdout
        assert _listed(client) == ["c"]
        shown = cli(server, "runs", "trash", "--project", "p", "--json").stdout.splitlines()
        assert sorted(json.loads(line)["name"] for line in shown) == ["a", "b"]

        assert "restored" in cli(server, "runs", "restore", ids["a"]).stdout
        assert _listed(client) == ["a", "c"]
        short = cli(server, "runs", "restore", ids["b"][:8], ok=False)
        assert "whole id" in short.stderr

        assert "purged" in cli(server, "runs", "purge", ids["b"], "--yes").stdout
        assert cli(server, "runs", "trash", "--project", "p").stdout.count(ids["b"]) == 0
        assert client.post(f"/api/v1/runs/{ids['b']}/restore").status_code == 404

        one = cli(server, "runs", "delete", ids["c"][:6], "--purge", "--yes", "--json")
        assert json.loads(one.stdout)["run_ids"] == [ids["c"]]
        assert _listed(client) == ["a"]

        shown = cli(server, "projects", "retention", "p").stdout
        assert "after 30 days (the server default)" in shown
        changed = cli(server, "projects", "retention", "p", "--trash-days", "7",
                      "--max-run-age-days", "90", "--json").stdout  # fmt: skip
        assert json.loads(changed) | {} == {"project": "p", "trash_days": 7,
                                             "max_run_age_days": 90,
                                             "effective_trash_days": 7}  # fmt: skip
        again = cli(server, "projects", "retention", "p", "--max-run-age-days", "never").stdout
        assert "after 7 days" in again
        assert "whatever their age" in again


def test_projects_rename_delete_restore_and_user_delete(server: ServerProcess) -> None:
    with api(server) as client:
        assert client.post("/api/v1/projects", json={"name": "q"}).status_code == 201
        assert client.post("/api/v1/projects/q/runs", json={"name": "r"}).status_code == 201
        made = client.post("/api/v1/users", json={"username": "dora", "role": "member"})
        assert made.status_code == 201
    assert "q is now q2" in cli(server, "projects", "rename", "q", "q2").stdout
    refused = cli(server, "projects", "delete", "q2", ok=False, stdin="n\n")
    assert refused.returncode != 0
    done = cli(server, "projects", "delete", "q2", "--yes").stdout
    assert "q2 and 1 run moved to the trash" in done
    with api(server) as client:
        assert client.get("/api/v1/projects/q2").status_code == 404
    assert "restored with 1 run" in cli(server, "projects", "restore", "q2").stdout
    gone = cli(server, "user", "delete", "dora", "--yes", "--data-dir", str(server.data_dir))
    assert "dora deleted" in gone.stdout
    with api(server) as client:
        assert client.get("/api/v1/projects/q2").status_code == 200
        assert "dora" not in [u["username"] for u in client.get("/api/v1/users").json()]
    old = cli(server, "runs", "trash", "--project", "q", ok=False)  # the old name: told the new
    assert old.returncode != 0
    assert "project 'q' is now called 'q2'" in old.stderr + old.stdout
    assert "Traceback" not in old.stderr
    cli(server, "projects", "delete", "q2", "--yes")
    assert "q2 and 1 run deleted for good" in cli(server, "projects", "purge", "q2", "--yes").stdout
    with api(server) as client:
        assert client.get("/api/v1/trash/projects").json() == []
