"""What a reviewer trying the CLI as a new user found (issue 11 follow-up), as a subprocess
against a real server over TLS: runs list shows the value it sorts by and no empty config;
tables at 80 columns split no header, id or word; key revoke by a short prefix; the local
operator commands on a machine without the server's data; a refused connection said at
once, naming the fix; the help names the commands as they are called."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli, start_server

RUN_A, RUN_B, RUN_C = "ca11" + "0" * 28, "ca22" + "0" * 28, "ca33" + "0" * 28


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("cli-review"))
    yield started
    started.stop()


def admin_key(server: ServerProcess) -> str:
    return str(json.loads((server.data_dir / "discovery.json").read_text())["api_key"])


def cli(server: ServerProcess, *args: str, ok: bool = True, columns: int = 200) -> Any:
    done = run_cli(*args, env={**cli_env(server.data_dir), "COLUMNS": str(columns)})
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def logged(server: ServerProcess) -> None:
    """Project "sorted": three runs with config lr and a metric train/acc (C has none)."""
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {admin_key(server)}"
        made = client.post("/api/v1/projects", json={"name": "sorted", "description": "x"})
        assert made.status_code == 201, made.text
        for run_id, lr in ((RUN_A, 0.01), (RUN_B, 0.3), (RUN_C, 0.1)):
            body = {"id": run_id, "name": f"lr{lr}", "config": {"lr": lr}}
            assert client.post("/api/v1/projects/sorted/runs", json=body).status_code == 201
        for n, (run_id, acc) in enumerate(((RUN_A, 0.25), (RUN_B, 0.75))):
            one = {"steps": [0], "times": [1.0], "values": [acc]}
            batch = {"batch_id": f"{n}" * 32, "metrics": {"train/acc": one}}
            assert client.post(f"/api/v1/runs/{run_id}/metrics", json=batch).status_code == 200


def test_runs_list_shows_the_metric_it_sorts_by(server: ServerProcess, logged: None) -> None:
    del logged
    args = ("runs", "list", "--project", "sorted", "--sort", "metrics.train/acc", "--desc")
    shown = cli(server, *args).stdout
    assert "metrics.train/acc" in shown
    lines = [line for line in shown.splitlines() if "ca" in line]
    assert re.search(r"ca220000.*0\.75", lines[0]), shown
    assert re.search(r"ca110000.*0\.25", lines[1]), shown
    rows = [json.loads(x) for x in cli(server, *args, "--json").stdout.splitlines()]
    assert [(r["id"], r["sort_metric"]) for r in rows] == [
        (RUN_B, 0.75), (RUN_A, 0.25), (RUN_C, None)
    ]  # fmt: skip
    assert all("config" not in r for r in rows)  # a list carries no config: none shown


def test_runs_list_json_has_config_only_when_asked(server: ServerProcess, logged: None) -> None:
    del logged
    listed = cli(server, "runs", "list", "--project", "sorted", "--json").stdout
    plain = [json.loads(x) for x in listed.splitlines()]
    assert plain
    assert all("config" not in r and "sort_metric" not in r for r in plain)
    asked = cli(server, "runs", "list", "--project", "sorted", "--config", "lr", "--json")
    configs = {json.loads(x)["id"]: json.loads(x)["config"] for x in asked.stdout.splitlines()}
    assert configs[RUN_A] == {"lr": 0.01}
    by_param = cli(server, "runs", "list", "--project", "sorted", "--sort", "params.lr").stdout
    assert re.search(r"[│┃]\s*lr\s*[│┃]", by_param.splitlines()[1]), by_param  # its column


def test_an_unknown_sort_key_is_named(server: ServerProcess, logged: None) -> None:
    del logged
    bogus = cli(server, "runs", "list", "--project", "sorted", "--sort", "bogus", ok=False)
    assert bogus.returncode != 0
    assert "unknown sort key 'bogus': use one of created, ended" in bogus.stderr


def _words_whole(out: str, words: list[str]) -> None:
    """Each word appears whole on some line (a split one would not)."""
    for word in words:
        assert word in out, f"{word!r} split or missing in:\n{out}"


def test_tables_keep_headers_and_ids_whole_at_80_columns(
    server: ServerProcess, logged: None
) -> None:
    del logged
    cli(server, "user", "add", "reviewer")
    token = cli(server, "key", "create", "--name", "a key for the nightly cluster jobs",
                "--user", "reviewer").stdout.strip()  # fmt: skip
    key_id = token.split("_")[1]
    keys = cli(server, "key", "list", "--all", columns=80).stdout
    assert max(len(line) for line in keys.splitlines()) <= 80, keys
    _words_whole(keys, ["key", "name", "owner", "scope", "project", "expires", "state",
                        "active", key_id, "nightly", "cluster"])  # fmt: skip
    projects = cli(server, "projects", "list", columns=80).stdout
    assert max(len(line) for line in projects.splitlines()) <= 80, projects
    _words_whole(projects, ["project", "description", "your role", "sorted"])
    path = server.data_dir.parent / "review.bin"  # a download: a long action in the log
    path.write_bytes(b"r" * 100)
    cli(server, "artifacts", "upload", RUN_A[:8], str(path))
    back = str(server.data_dir.parent / "back.bin")
    cli(server, "artifacts", "download", _artifact(server), "-o", back)
    audit = cli(server, "audit", "list", columns=80).stdout
    assert max(len(line) for line in audit.splitlines()) <= 80, audit
    _words_whole(audit, ["artifact.downloaded", "outcome", "at (UTC)", "target"])
    for line in audit.splitlines():
        for ref in re.findall(r"\b(?:key|artifact|run):(\S*)", line):
            assert ref == "" or len(ref) >= 12, f"an id split: {line!r} in\n{audit}"


def _artifact(server: ServerProcess) -> str:
    listed = cli(server, "artifacts", "list", RUN_A[:8], "--json").stdout.splitlines()
    return str(json.loads(listed[0])["id"])


def test_key_revoke_needs_a_longer_prefix_and_a_confirmation(server: ServerProcess) -> None:
    cli(server, "user", "add", "keyed")
    token = cli(server, "key", "create", "--name", "short", "--user", "keyed").stdout.strip()
    key_id = token.split("_")[1]
    short = cli(server, "key", "revoke", key_id[0], ok=False)
    assert short.returncode != 0
    assert "too short to revoke by: a key id is the 12 hex digits after sb_" in short.stderr
    empty = cli(server, "key", "revoke", "sb_", ok=False)
    assert "'sb_' is not a key id: a key id is the 12 hex digits after sb_" in empty.stderr
    unasked = cli(server, "key", "revoke", key_id[:5], ok=False)
    assert unasked.returncode != 0
    assert f"is a prefix of key {key_id}: give the whole id, or --yes" in unasked.stderr
    listed = [
        json.loads(x) for x in cli(server, "key", "list", "--all", "--json").stdout.splitlines()
    ]
    assert not next(k for k in listed if k["id"] == key_id)["revoked"]  # nothing revoked yet
    assert f"key {key_id} revoked" in cli(server, "key", "revoke", key_id[:5], "--yes").stdout


def test_local_commands_refuse_where_no_server_lives(tmp_path: Path) -> None:
    teammate = tmp_path / "teammate-data"
    for args in (("key", "list"), ("key", "create", "--name", "x"), ("user", "list"),
                 ("audit", "list")):  # fmt: skip
        done = run_cli(*args, data_dir=teammate)
        assert done.returncode != 0, args
        said = f"safeboard: error: no safeboard server data in {teammate}: these commands"
        assert done.stderr.startswith(said), (args, done.stderr)
        assert "`safeboard login URL`" in done.stderr
        assert not teammate.exists(), args  # nothing created: no safeboard.db, no secrets
    teammate.mkdir(mode=0o700)
    assert run_cli("user", "list", data_dir=teammate).returncode != 0
    assert list(teammate.iterdir()) == []


def test_a_refused_connection_is_said_at_once_with_the_fix(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {**cli_env(tmp_path), "SAFEBOARD_URL": url, "SAFEBOARD_API_KEY": "sb_abcdef012345_x"}
    started = time.monotonic()
    done = run_cli("projects", "list", env=env)
    took = time.monotonic() - started
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"safeboard: error: no safeboard server answers at {url} (connection refused): is it "
        "running? start it with `safeboard server`, or check the address"
    )
    assert took < 5.0  # the interpreter's start included; the old code retried for ~4-7 s


def test_help_names_rm_and_revoke_says_when_nothing_was_held(
    server: ServerProcess, logged: None
) -> None:
    del logged
    assert "rm" in cli(server, "artifacts", "--help").stdout.split("Commands:")[0]
    cli(server, "user", "add", "nobody")
    said = cli(server, "grant", "sorted", "nobody", "editor").stdout
    assert "nobody is now an editor of sorted" in said
    assert "no longer" in cli(server, "revoke", "sorted", "nobody").stdout
    again = cli(server, "revoke", "sorted", "nobody", ok=False)
    assert "nobody had no role in sorted: nothing to revoke" in again.stderr
    assert "no longer" not in again.stdout
