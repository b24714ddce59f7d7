"""The CLI people expect (issue 11), as a subprocess against a real server over TLS: runs
export round-trips metric keys with / % ? #, runs list filters and sorts with the
dashboard's language, ids as printed (unique prefixes; ambiguous ones list candidates),
grant and revoke, key create's write default, tables with headers, --json on listings,
audit list at 80 columns, one error prefix."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server

ODD_KEYS = ["train/loss", "100% done", "what?", "#1", "a b/c%2Fd?e=f#g"]
RUN_A, RUN_B = "abc1" + "0" * 28, "abc2" + "0" * 28


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("client-cli"))
    yield started
    started.stop()


def admin_key(server: ServerProcess) -> str:
    return str(json.loads((server.data_dir / "discovery.json").read_text())["api_key"])


def api(server: ServerProcess, key: str | None = None) -> httpx.Client:
    client = server.client()
    client.headers["Authorization"] = f"Bearer {key or admin_key(server)}"
    return client


def cli(server: ServerProcess, *args: str, ok: bool = True) -> Any:
    done = run_cli(*args, env={**cli_env(server.data_dir), "COLUMNS": "200"})
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def logged(server: ServerProcess) -> str:
    """Two runs in project "odd" whose ids share the prefix abc; run A has odd keys."""
    with api(server) as client:
        assert client.post("/api/v1/projects", json={"name": "odd"}).status_code == 201
        for run_id, lr, model in ((RUN_A, 0.1, "mlp"), (RUN_B, 0.3, "cnn")):
            body = {"id": run_id, "name": f"lr{lr}", "config": {"lr": lr}, "tags": {"model": model}}
            made = client.post("/api/v1/projects/odd/runs", json=body)
            assert made.status_code == 201, made.text
        batch = {"batch_id": "c" * 32, "metrics": {
            k: {"steps": [0, 1, 2], "times": [1.0, 2.0, 3.0], "values": [i, i + 0.5, "NaN"]}
            for i, k in enumerate(ODD_KEYS)}}  # fmt: skip
        assert client.post(f"/api/v1/runs/{RUN_A}/metrics", json=batch).status_code == 200
        for n, (run_id, acc) in enumerate(((RUN_A, 0.9), (RUN_B, 0.7))):
            one = {"steps": [0], "times": [1.0], "values": [acc]}
            batch = {"batch_id": f"{n}" * 32, "metrics": {"acc": one}}
            assert client.post(f"/api/v1/runs/{run_id}/metrics", json=batch).status_code == 200
    return RUN_A


def test_export_round_trips_metric_keys_with_slash_percent_question_hash(
    server: ServerProcess, logged: str
) -> None:
    out = cli(server, "runs", "export", logged[:12]).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted({row["key"] for row in rows}) == sorted([*ODD_KEYS, "acc"])
    for i, key in enumerate(ODD_KEYS):
        values = [row["value"] for row in rows if row["key"] == key]
        assert values == [str(float(i)), str(i + 0.5), "NaN"]
    shown = cli(server, "runs", "show", logged[:8]).stdout
    assert "3 points" in shown


def test_runs_list_filters_and_sorts_as_the_dashboard(server: ServerProcess, logged: str) -> None:
    del logged
    found = cli(server, "runs", "list", "--project", "odd", "--filter", "params.lr > 0.2",
                "--json").stdout.splitlines()  # fmt: skip
    assert [json.loads(line)["name"] for line in found] == ["lr0.3"]
    for sort, desc, expected in (("params.lr", True, ["lr0.3", "lr0.1"]),
                                 ("params.lr", False, ["lr0.1", "lr0.3"]),
                                 ("tags.model", False, ["lr0.3", "lr0.1"]),
                                 ("metrics.acc", True, ["lr0.1", "lr0.3"]),
                                 ("metrics.acc", False, ["lr0.3", "lr0.1"]),
                                 ("name", True, ["lr0.3", "lr0.1"]),
                                 ("params.lr", None, ["lr0.3", "lr0.1"]),
                                 ("metrics.acc", None, ["lr0.1", "lr0.3"])):  # fmt: skip
        # None: no flag, largest first, as the API and Client.runs sort (issue 13).
        flag = {True: ["--desc"], False: ["--asc"], None: []}[desc]
        args = ["--sort", sort, *flag]
        lines = cli(server, "runs", "list", "--project", "odd", *args, "--json").stdout
        assert [json.loads(line)["name"] for line in lines.splitlines()] == expected, sort
    table = cli(server, "runs", "list", "--project", "odd").stdout
    assert re.search(r"run\s*[│┃]\s*name\s*[│┃]\s*status\s*[│┃]\s*created", table), table
    for bad_args in (("--filter", "params.lr >"), ("--sort", "colour")):
        bad = cli(server, "runs", "list", "--project", "odd", *bad_args, ok=False)
        assert bad.returncode != 0
        assert bad.stderr.startswith("safeboard: error: ")
        assert "Traceback" not in bad.stderr
    assert "column" in cli(server, "runs", "list", "--project", "odd", "--filter", "x >",
                           ok=False).stderr  # fmt: skip
    many = cli(server, "runs", "list", "--project", "odd", "--sort", "tags.model", "--asc",
               "--limit", "1", "--json").stdout.splitlines()  # fmt: skip
    assert [json.loads(line)["name"] for line in many] == ["lr0.3"]


def test_runs_list_shows_a_nan_last_value(server: ServerProcess, logged: str) -> None:
    """Run A's train/loss ends in NaN: listed as "NaN" (before: as never logged), and
    sorted last with run B, which has none."""
    del logged
    args = ("runs", "list", "--project", "odd", "--sort", "metrics.train/loss")
    lines = cli(server, *args, "--json").stdout.splitlines()
    assert [(json.loads(line)["name"], json.loads(line)["sort_metric"]) for line in lines] == [
        ("lr0.3", None), ("lr0.1", "NaN"),
    ]  # fmt: skip
    table = cli(server, *args).stdout
    assert re.search(r"lr0\.1\s*[│┃].*[│┃]\s*NaN\s*[│┃]", table), table


def test_ids_as_printed_and_ambiguous_prefixes(server: ServerProcess, logged: str) -> None:
    del logged
    shown = json.loads(cli(server, "runs", "show", "abc2", "--json").stdout)
    assert shown["id"] == RUN_B
    ambiguous = cli(server, "runs", "show", "abc", ok=False)
    assert ambiguous.returncode != 0
    said = "safeboard: error: ambiguous run id prefix 'abc': it could be"
    assert ambiguous.stderr.startswith(said)
    assert RUN_A in ambiguous.stderr
    assert RUN_B in ambiguous.stderr
    missing = cli(server, "runs", "show", "ffff", ok=False)
    assert "no run 'ffff'" in missing.stderr
    not_hex = cli(server, "runs", "show", "zz", ok=False)
    assert "not a run id" in not_hex.stderr
    # artifacts: upload to a run given by prefix, list and remove by prefix
    path = server.data_dir.parent / "weights.bin"
    path.write_bytes(b"w" * 1000)
    cli(server, "artifacts", "upload", "abc1", str(path))
    (item,) = [
        json.loads(x)
        for x in cli(server, "artifacts", "list", "abc1", "--json").stdout.splitlines()
    ]
    assert item["name"] == "weights.bin"
    cli(server, "artifacts", "rm", item["id"][:10], "--yes")
    assert cli(server, "artifacts", "list", "abc1", "--json").stdout == ""


def test_grant_defaults_to_viewer_and_revoke_takes_it_away(server: ServerProcess) -> None:
    assert "added olga" in cli(server, "user", "add", "olga").stdout
    with api(server) as client:
        assert client.post("/api/v1/projects", json={"name": "shared"}).status_code == 201
    said = cli(server, "grant", "shared", "olga").stdout
    assert "olga is now a viewer of shared" in said
    token = cli(server, "key", "create", "--name", "olga", "--user", "olga").stdout.strip()
    with api(server, token) as client:
        (project,) = client.get("/api/v1/projects").json()
        assert project["role"] == "viewer"
        refused = client.post("/api/v1/projects/shared/runs", json={})
        assert refused.status_code == 403
        assert refused.json()["error"] == {
            "code": "role_insufficient",
            "message": "your role in this project (viewer) may not write to it; ask a project "
            "owner to grant you the editor role",
            "request_id": refused.json()["error"]["request_id"],
        }
    cli(server, "grant", "shared", "olga", "editor")
    with api(server, token) as client:
        assert client.post("/api/v1/projects/shared/runs", json={}).status_code == 201
    assert "olga no longer has a role in shared" in cli(server, "revoke", "shared", "olga").stdout
    again = cli(server, "revoke", "shared", "olga", ok=False)
    assert again.returncode != 0
    assert "olga had no role in shared: nothing to revoke" in again.stderr
    assert "no longer" not in again.stdout
    with api(server, token) as client:
        assert client.get("/api/v1/projects").json() == []
    wrong = cli(server, "grant", "shared", "olga", "boss", ok=False)
    assert wrong.stderr.startswith("safeboard: error: ")


def test_key_create_makes_a_key_that_can_log_runs(server: ServerProcess) -> None:
    cli(server, "user", "add", "kim")
    token = cli(server, "key", "create", "--name", "ci", "--user", "kim").stdout.strip()
    with api(server, token) as client:
        assert client.post("/api/v1/projects", json={"name": "kims"}).status_code == 201
        assert client.post("/api/v1/projects/kims/runs", json={}).status_code == 201
    listing = cli(server, "key", "list", "--user", "kim", "--json").stdout
    (listed,) = [json.loads(x) for x in listing.splitlines()]
    assert (listed["name"], listed["scope"], listed["owner"]) == ("ci", "write", "kim")
    table = cli(server, "key", "list", "--user", "kim").stdout
    assert re.search(r"key\s*[│┃]\s*name\s*[│┃]\s*owner\s*[│┃]\s*scope", table), table
    key_id = listed["id"]
    assert f"key {key_id} revoked" in cli(server, "key", "revoke", key_id[:6], "--yes").stdout
    users = cli(server, "user", "list").stdout
    assert re.search(r"user\s*[│┃]\s*role\s*[│┃]\s*active", users), users
    (kim,) = [json.loads(x) for x in cli(server, "user", "list", "--json").stdout.splitlines()
              if json.loads(x)["username"] == "kim"]  # fmt: skip
    assert kim["role"] == "member"


def test_audit_list_fits_80_columns(server: ServerProcess) -> None:
    done = run_cli("audit", "list", env={**cli_env(server.data_dir), "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert re.search(r"id\s+at \(UTC\)\s+action\s+actor\s+target\s+outcome", lines[0])
    assert max(len(line) for line in lines) <= 80, done.stdout
    wide = run_cli("audit", "list", "--wide", env={**cli_env(server.data_dir), "COLUMNS": "80"})
    assert "address" in wide.stdout


def test_one_error_prefix_for_usage_errors(tmp_path: Path) -> None:
    done = run_cli("runs", "list", data_dir=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("safeboard: error: Missing option '--project'")
