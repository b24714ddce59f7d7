"""What the CLI says to a newcomer, as a subprocess against a real server (the newcomer
report's items 4-8, 17 and 18): each message names what happened and the fix, in plain
words, with no traceback, no Python warning and no pydantic wording."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli, start_server

pytestmark = pytest.mark.e2e

PASSWORD = "quartz-Meadow-ember-61-lantern"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A plain-HTTP loopback server with user alice (password ``PASSWORD``)."""
    started = start_server(tmp_path_factory.mktemp("cli-messages"))
    assert run_cli("user", "add", "alice", data_dir=started.data_dir).returncode == 0
    set_password = run_cli(
        "user", "set-password", "--password-stdin", "alice",
        data_dir=started.data_dir, input=f"{PASSWORD}\n",
    )  # fmt: skip
    assert set_password.returncode == 0, set_password.stderr
    yield started
    started.stop()


def client_env(tmp_path: Path) -> dict[str, str]:
    """A CLI of another machine: its own config directory, no local server to find."""
    env = cli_env(tmp_path / "no-local-server")
    env["SAFEBOARD_CONFIG_DIR"] = str(tmp_path / "config")
    return env


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command prints: no traceback, no warning."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("safeboard: error: "), done.stderr
    return lines[0].removeprefix("safeboard: error: ")


def test_login_names_the_scope_of_the_stored_key(server: ServerProcess, tmp_path: Path) -> None:
    done = run_cli(
        "login", server.url, "--username", "alice", "--password-stdin",
        env=client_env(tmp_path), input=f"{PASSWORD}\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = next(line for line in done.stdout.splitlines() if line.startswith("API key"))
    assert ", scope write) stored in " in stored, stored
    admin = run_cli(
        "login", server.url, "--username", "alice", "--password-stdin", "--scope", "admin",
        env=client_env(tmp_path), input=f"{PASSWORD}\n",
    )  # fmt: skip
    assert ", scope admin) stored in " in admin.stdout, admin.stdout


def test_https_to_a_plain_http_server_names_the_scheme(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Login checks the certificate first (a bare handshake), commands go through the client:
    both say that the port speaks plain HTTP and which URL to use, not OpenSSL's words."""
    https = server.url.replace("http://", "https://")
    plain = server.url
    login = run_cli(
        "login", https, "--username", "alice", "--password-stdin",
        env=client_env(tmp_path), input=f"{PASSWORD}\n",
    )  # fmt: skip
    keyed = {**client_env(tmp_path), "SAFEBOARD_URL": https, "SAFEBOARD_API_KEY": "sb_0_x"}
    listed = run_cli("projects", "list", env=keyed)
    for said in (one_error(login), one_error(listed)):
        assert said.startswith(f"{https} does not speak TLS: it is a plain-HTTP port"), said
        assert f"Use {plain} " in said, said
        assert "WRONG_VERSION_NUMBER" not in said
    assert not (tmp_path / "config" / "credentials").exists()


def test_set_password_without_a_terminal_refuses_like_login(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Piped in without --password-stdin: refused before anything is read or set (it had
    printed Python's GetPassWarning, read the pipe as if typed, and set the password)."""
    unasked = "another-Quartz-meadow-62-lantern"
    done = run_cli(
        "user", "set-password", "alice",
        data_dir=server.data_dir, input=f"{unasked}\n{unasked}\n",
    )  # fmt: skip
    assert one_error(done) == "no terminal to ask for the password: pass --password-stdin"
    assert "GetPassWarning" not in done.stderr
    assert "password set" not in done.stdout
    login = run_cli(
        "login", server.url, "--username", "alice", "--password-stdin",
        env=client_env(tmp_path), input=f"{PASSWORD}\n",
    )  # fmt: skip
    assert login.returncode == 0, login.stderr  # the password is the one it was


def logged_in(server: ServerProcess, tmp_path: Path) -> dict[str, str]:
    """The environment of alice's CLI on another machine, signed in to ``server``."""
    env = client_env(tmp_path)
    done = run_cli(
        "login", server.url, "--username", "alice", "--password-stdin",
        env=env, input=f"{PASSWORD}\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return env


def test_a_taken_project_name_says_already_exists_to_who_can_see_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Who can see the project hears that it exists; who cannot gets the words that tell
    only that the name is taken (docs/security.md, S9: existence does not leak)."""
    alice = logged_in(server, tmp_path)
    assert run_cli("projects", "create", "alices", env=alice).returncode == 0
    again = one_error(run_cli("projects", "create", "alices", env=alice))
    assert again == "project 'alices' already exists", again
    admin = one_error(run_cli("projects", "create", "alices", data_dir=server.data_dir))
    assert admin == "project 'alices' already exists", admin  # an admin sees every project
    assert run_cli("projects", "create", "roots-plan", data_dir=server.data_dir).returncode == 0
    hidden = one_error(run_cli("projects", "create", "roots-plan", env=alice))
    assert hidden == "project name not available", hidden


def test_a_url_with_no_key_says_what_is_missing_there(
    server: ServerProcess, tmp_path: Path
) -> None:
    """``--url`` with no key stored for it: nothing answering there is said first (a login
    could not help yet); a server that answers gets the login command for that URL."""
    env = client_env(tmp_path)
    away = f"http://127.0.0.1:{free_port()}"
    nobody = one_error(run_cli("runs", "list", "--project", "mnist", "--url", away, env=env))
    assert nobody.startswith(f"no safeboard server answers at {away} (connection refused)")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "events.out.tfevents.1.host").write_bytes(b"")
    for command in (("runs", "list", "--project", "mnist"),
                    ("import", "tensorboard", str(logs), "-p", "mnist")):  # fmt: skip
        keyless = run_cli(*command, "--url", server.url, env=env)
        assert one_error(keyless) == (
            f"no API key stored for {server.url}: run `safeboard login {server.url}`"
        ), command
    with another_service() as other:  # answers /healthz with 404: something is there
        keyless = run_cli("runs", "list", "--project", "mnist", "--url", other, env=env)
        assert one_error(keyless) == f"no API key stored for {other}: run `safeboard login {other}`"


@contextmanager
def another_service() -> Iterator[str]:
    """A web service that is not safeboard on a port of this host: 404 to everything."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_sizes_read_alike_in_tables_progress_bars_and_backups(
    server: ServerProcess, tmp_path: Path
) -> None:
    """One way to write a size (safeboard.sizes: decimal, ``12.4 KB``) in the list, the
    upload and download bars and the backup's report; the bars wrote rich's ``12.4 kB``,
    the backup ``MiB``."""
    made = run_cli("projects", "create", "units", data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    with server.client() as client:
        key = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
        client.headers["Authorization"] = f"Bearer {key}"
        run = client.post("/api/v1/projects/units/runs", json={"name": "sized"})
        assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    path = tmp_path / "weights.bin"
    path.write_bytes(b"w" * 12_400)
    up = run_cli("artifacts", "upload", run_id, str(path), data_dir=server.data_dir)
    assert up.returncode == 0, up.stderr
    assert "(12.4 KB, sha256 " in up.stdout
    artifact = up.stdout.split("artifact ")[1].split()[0]
    back = tmp_path / "back.bin"
    down = run_cli("artifacts", "download", artifact, "-o", str(back), data_dir=server.data_dir)
    assert down.returncode == 0, down.stderr
    listed = run_cli("artifacts", "list", run_id, data_dir=server.data_dir)
    assert "12.4 KB" in listed.stdout, listed.stdout
    for bars in (up.stderr, down.stderr):
        assert "12.4 KB / 12.4 KB" in bars, bars
        assert "kB" not in bars, bars
    backup = run_cli("backup", str(tmp_path / "all.tar"), data_dir=server.data_dir)
    assert backup.returncode == 0, backup.stderr
    assert re.search(r"artifact files, \d+\.\d (KB|MB)\n", backup.stdout), backup.stdout


PLAIN_NAME = (
    "body.name: must be 1 to 100 letters, digits, dots, dashes or underscores, starting "
    "with a letter or digit"
)


def test_refused_input_is_said_in_plain_words(server: ServerProcess, tmp_path: Path) -> None:
    """The CLI, the SDK, the API and a dashboard page: the field and the code stay, the
    words are a person's (they were pydantic's: "String should match pattern '^[A-Za...'")."""
    said = one_error(run_cli("projects", "create", "bad/name", data_dir=server.data_dir))
    assert said == PLAIN_NAME, said
    script = (
        "import safeboard\ntry:\n safeboard.init(project='bad/name')\n"
        "except safeboard.InvalidRequest as exc:\n print(exc.code, exc.message)"
    )
    sdk = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(server.data_dir), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # Not sent: a name no project can have is refused by the client, in the same words
    # (sent, "bad/name" reached no route: "no such resource").
    refused_name = PLAIN_NAME.replace("body.name:", "project 'bad/name':")
    assert sdk.stdout.strip() == f"invalid_request {refused_name}", sdk.stdout + sdk.stderr
    for args in (("runs", "list", "--project", "bad/name"), ("projects", "restore", "bad/name")):
        said = one_error(run_cli(*args, data_dir=server.data_dir))
        assert said == refused_name, said
    said = one_error(run_cli("runs", "list", "--project", "..", data_dir=server.data_dir))
    assert said == PLAIN_NAME.replace("body.name:", "project '..':"), said
    key = json.loads((server.data_dir / "discovery.json").read_text())["api_key"]
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        api = client.get("/api/v1/tasks/abc").json()["error"]
        assert (api["code"], api["message"]) == (
            "invalid_request",
            "path.task_id: must be a whole number",
        )
        page = client.get("/tasks/abc", headers={"Accept": "text/html"})
        assert page.status_code == 404, page.text
        assert '<p class="error" role="alert">no such task</p>' in page.text
        limit = client.get("/api/v1/projects/alices/runs", params={"limit": "many"})
        assert limit.json()["error"]["message"] == "query.limit: must be a whole number"
