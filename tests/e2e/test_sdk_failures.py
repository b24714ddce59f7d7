"""The SDK's failures are visible at once, with the fix (issue 11): `safeboard.init()` raises
one exception per cause against a real server; a server that is away gets one warning and
the run spools (R2); a refusal during a run is said once and kept for `safeboard sync`,
which shows the cause, exits non-zero and can discard a run."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from safeboard.accounts.api_keys import VERIFIED_FOR
from safeboard.client.trust import TrustStore, fetch_certificate
from safeboard.metrics.service import ACCESS_FOR
from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli, start_server

pytestmark = pytest.mark.e2e

INIT = textwrap.dedent(
    """
    import safeboard
    try:
        run = safeboard.init(project={project!r}, name="probe")
    except safeboard.SafeboardError as exc:
        print(type(exc).__name__, exc.code, "|", exc.message)
        raise SystemExit(3)
    run.log({{"loss": 1.0}})
    run.finish(timeout={finish})
    print("started", run.id)
    """
)


@dataclass
class Servers:
    tls: ServerProcess
    plain: ServerProcess
    write_key: str
    read_key: str
    tmp: Path

    def env(self, url: str, key: str, **extra: str) -> dict[str, str]:
        env = cli_env(self.tmp / "nowhere")  # no discovery file: only what is given here
        env.update(
            SAFEBOARD_URL=url,
            SAFEBOARD_API_KEY=key,
            SAFEBOARD_SPOOL_DIR=str(self.tmp / "spool"),
            SAFEBOARD_CONFIG_DIR=str(self.tmp / "config"),
        )
        env.update(extra)
        return env

    def tls_env(self, key: str, **extra: str) -> dict[str, str]:
        return self.env(self.tls.url, key, SAFEBOARD_CA_CERT=str(self.tls.ca_path), **extra)


def make_key(server: ServerProcess, scope: str, *args: str) -> str:
    made = run_cli(
        "key", "create", "--name", f"k-{scope}", "--scope", scope, *args, data_dir=server.data_dir
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("failures")
    tls = start_server(tmp, "--tls", name="tls")
    plain = start_server(tmp, name="plain")
    try:
        yield Servers(tls, plain, make_key(tls, "write"), make_key(tls, "read"), tmp)
    finally:
        tls.stop()
        plain.stop()


def script(
    tmp: Path, env: dict[str, str], project: str = "mnist", finish: float = 5.0
) -> subprocess.CompletedProcess[str]:
    path = tmp / "init.py"
    path.write_text(INIT.format(project=project, finish=finish))
    return subprocess.run(
        [sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def refused(done: subprocess.CompletedProcess[str], cls: str, code: str, *words: str) -> str:
    assert done.returncode == 3, (done.stdout, done.stderr)
    line = done.stdout.strip()
    assert line.startswith(f"{cls} {code} |"), line
    for word in words:
        assert word in line, line
    return line


def spooled(servers: Servers) -> list[str]:
    root = servers.tmp / "spool"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_a_good_key_prints_the_runs_dashboard_address(servers: Servers) -> None:
    done = script(servers.tmp, servers.tls_env(servers.write_key))
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    assert f"safeboard: run probe -> {servers.tls.url}/runs/{run_id}\n" in done.stderr
    quiet = script(servers.tmp, servers.tls_env(servers.write_key, SAFEBOARD_QUIET="1"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""


@pytest.mark.parametrize(
    ("key", "cls", "code", "fix"),
    [
        ("sb_000000000000_" + "A" * 43, "InvalidApiKey", "key_invalid", "safeboard key create"),
        ("not-a-key", "InvalidApiKey", "key_invalid", "safeboard key create --scope write"),
        ("read", "InsufficientScope", "scope_insufficient", "safeboard key create --scope write"),
    ],
)
def test_init_refuses_a_key_that_cannot_write(
    servers: Servers, key: str, cls: str, code: str, fix: str
) -> None:
    before = spooled(servers)
    token = servers.read_key if key == "read" else key
    line = refused(script(servers.tmp, servers.tls_env(token)), cls, code, fix)
    if key == "read":
        assert "this API key has read scope, so it may not write to this project" in line
    assert spooled(servers) == before  # nothing left behind to "sync" later


def test_init_refuses_a_revoked_key(servers: Servers) -> None:
    token = make_key(servers.tls, "write")
    revoked = run_cli("key", "revoke", token.split("_")[1], data_dir=servers.tls.data_dir)
    assert revoked.returncode == 0, revoked.stderr
    refused(
        script(servers.tmp, servers.tls_env(token)),
        "ApiKeyRevoked",
        "key_revoked",
        "this API key was revoked",
        "safeboard key create --scope write",
    )


def test_init_refuses_a_project_without_a_grant(servers: Servers) -> None:
    made = script(servers.tmp, servers.tls_env(servers.write_key), project="private")
    assert made.returncode == 0, made.stderr  # root's project
    added = run_cli("user", "add", "bob", data_dir=servers.tls.data_dir)
    assert added.returncode == 0, added.stderr
    bob = make_key(servers.tls, "write", "--user", "bob")
    refused(
        script(servers.tmp, servers.tls_env(bob), project="private"),
        "ProjectNotFound",
        "project_not_found",
        "project 'private' does not exist or you have no access",
        "ask its owner",
    )
    headers = {"Authorization": f"Bearer {make_key(servers.tls, 'admin')}"}
    with servers.tls.client() as client:
        granted = client.put(
            "/api/v1/projects/private/grants/bob", json={"role": "viewer"}, headers=headers
        )
    assert granted.status_code == 204, granted.text
    refused(
        script(servers.tmp, servers.tls_env(bob), project="private"),
        "InsufficientRole",
        "role_insufficient",
        "(viewer) may not write to it",
        "editor role",
    )


def test_init_with_a_key_bound_to_another_project_says_so(servers: Servers) -> None:
    """The owner's own key, bound to one project, used for another: told so, not "ask its
    owner for a grant" (issue 11 review)."""
    made = script(servers.tmp, servers.tls_env(servers.write_key), project="bound")
    assert made.returncode == 0, made.stderr
    with servers.tls.client() as client:
        headers = {"Authorization": f"Bearer {servers.write_key}"}
        project_id = client.get("/api/v1/projects/bound", headers=headers).json()["id"]
    bound = make_key(servers.tls, "write", "--project-id", str(project_id))
    assert script(servers.tmp, servers.tls_env(bound), project="bound").returncode == 0
    refused(
        script(servers.tmp, servers.tls_env(bound), project="elsewhere"),
        "KeyBoundToProject",
        "key_project_bound",
        "project 'elsewhere' is not the one this API key is bound to",
        "a key that is not bound to a project",
    )


def posts(server: ServerProcess) -> int:
    return server.log.count('"POST /api/')


def test_init_refuses_an_untrusted_certificate_before_sending_anything(servers: Servers) -> None:
    before = posts(servers.tls)
    done = script(servers.tmp, servers.env(servers.tls.url, servers.write_key))
    refused(
        done,
        "UntrustedCertificate",
        "tls_untrusted",
        "nothing was sent",
        f"safeboard login {servers.tls.url}",
    )
    assert posts(servers.tls) == before


def test_init_refuses_a_changed_certificate_before_sending_anything(
    servers: Servers, tmp_path: Path
) -> None:
    other = start_server(tmp_path, "--tls", name="other")
    try:
        config = tmp_path / "config"
        # Another certificate was trusted for this address: the server now presents its own.
        TrustStore(config / "trust").pin(servers.tls.url, fetch_certificate(other.url))
        before = posts(servers.tls)
        env = servers.env(servers.tls.url, servers.write_key, SAFEBOARD_CONFIG_DIR=str(config))
        refused(
            script(servers.tmp, env),
            "CertificateChanged",
            "tls_changed",
            "has changed; nothing was sent",
        )
        assert posts(servers.tls) == before
    finally:
        other.stop()


def test_init_says_which_scheme_a_port_speaks(servers: Servers) -> None:
    https_on_plain = servers.plain.url.replace("http://", "https://")
    refused(
        script(servers.tmp, servers.env(https_on_plain, servers.write_key)),
        "WrongScheme",
        "wrong_scheme",
        "does not speak TLS",
        f"Use {servers.plain.url}",
    )
    http_on_tls = servers.tls.url.replace("https://", "http://")
    refused(
        script(servers.tmp, servers.env(http_on_tls, servers.write_key)),
        "WrongScheme",
        "wrong_scheme",
        f"use {servers.tls.url}",
    )


@pytest.mark.parametrize("url", ["https://127.0.0.1:8080/foo", "not a url"])
def test_init_refuses_a_malformed_url_without_a_traceback_into_the_sdk(
    servers: Servers, url: str
) -> None:
    refused(
        script(servers.tmp, servers.env(url, servers.write_key)),
        "InvalidUrl",
        "invalid_url",
        "https://",
    )
    path = servers.tmp / "bare.py"
    path.write_text(f"import safeboard\nsafeboard.init(project='p', url={url!r})\n")
    bare = subprocess.run(
        [sys.executable, str(path)],
        env=servers.env(url, "x"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bare.returncode == 1
    assert "safeboard.errors.InvalidUrl:" in bare.stderr
    assert bare.stderr.count('File "') == 2  # the script's line and init(): nothing deeper


def test_unreachable_server_warns_once_spools_and_sync_delivers_later(
    servers: Servers, tmp_path: Path
) -> None:
    port = free_port()
    first = start_server(tmp_path, name="away", port=port)
    key = make_key(first, "write")
    first.stop()
    env = servers.env(f"http://127.0.0.1:{port}", key, SAFEBOARD_SPOOL_DIR=str(tmp_path / "sp"))
    started = time.monotonic()
    done = script(tmp_path, env, finish=1.0)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    warnings = [line for line in done.stderr.splitlines() if "cannot reach" in line]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith(
        f"safeboard: cannot reach http://127.0.0.1:{port}: connection refused; logging to the "
        "spool ("
    )
    assert warnings[0].endswith("and retrying in the background")
    assert "refused its data" not in done.stderr  # away is not a refusal
    run_id = done.stdout.split()[-1]
    assert (tmp_path / "sp" / run_id / "run.json").exists()
    second = start_server(tmp_path, name="away", port=port)
    try:
        synced = run_cli("sync", env=env, timeout=120)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert f"probe ({run_id}): 1 point sent, done" in synced.stdout
    finally:
        second.stop()


MID_RUN = textwrap.dedent(
    """
    import sys, time
    import safeboard

    run = safeboard.init(project=sys.argv[1], name=sys.argv[2], flush_interval=0.1)
    for step in range(10):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    assert run.flush(10)
    print(run.id, flush=True)
    sys.stdin.readline()  # the key is revoked now
    for step in range(10, 30):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        time.sleep(0.1)
    started = time.monotonic()
    run.finish(timeout=20)
    print(f"finish {time.monotonic() - started:.1f}")
    """
)


def pause_and_meanwhile(
    env: dict[str, str], path: Path, source: str, argv: list[str], meanwhile: Callable[[], None]
) -> tuple[str, str, str]:
    """Run ``source``, which prints its run's id and waits for a line on stdin; call
    ``meanwhile()`` then, and let it go on. Returns the run's id, stdout and stderr."""
    path.write_text(source)
    training = subprocess.Popen(
        [sys.executable, str(path), *argv],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert training.stdout is not None
    run_id = training.stdout.readline().strip()
    meanwhile()
    out, err = training.communicate("go\n", timeout=120)
    assert training.returncode == 0, err
    return run_id, out, err


def train_and_meanwhile(
    env: dict[str, str], path: Path, project: str, name: str, meanwhile: Callable[[], None]
) -> tuple[str, str, str]:
    """Run MID_RUN: ten points delivered, then ``meanwhile()``, then twenty more and
    finish(). Returns the run's id, stdout and stderr."""
    run_id, out, err = pause_and_meanwhile(env, path, MID_RUN, [project, name], meanwhile)
    assert float(out.split()[-1]) < 5  # no 20 s wait for a server that said no
    return run_id, out, err


def test_key_revoked_mid_run_is_said_once_and_kept_for_sync(servers: Servers) -> None:
    key = make_key(servers.tls, "write")
    env = servers.tls_env(key, SAFEBOARD_SPOOL_DIR=str(servers.tmp / "mid"))

    def revoke() -> None:
        revoked = run_cli("key", "revoke", key.split("_")[1], data_dir=servers.tls.data_dir)
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(VERIFIED_FOR + 0.2)  # a server trusts a verified key that long (issue 13)

    run_id, _, err = train_and_meanwhile(env, servers.tmp / "mid.py", "mnist", "revoked", revoke)
    refusals = [line for line in err.splitlines() if "refused its data" in line]
    assert len(refusals) == 1, err
    assert "this API key was revoked" in refusals[0]
    (last,) = [line for line in err.splitlines() if "not delivered" in line]
    assert last.startswith(f"safeboard: run revoked ({run_id}): 20 points not delivered: ")
    assert "this API key was revoked" in last
    assert f"safeboard sync --discard {run_id}" in last
    meta = json.loads((servers.tmp / "mid" / run_id / "run.json").read_text())
    assert meta["last_error"]["code"] == "key_revoked"
    assert meta["status"] == "finished"

    synced = run_cli("sync", env=env)
    assert synced.returncode == 1
    assert f"revoked ({run_id}): nothing sent, failed, 20 points still spooled: " in synced.stdout
    assert "this API key was revoked" in synced.stdout
    assert "sync --discard RUN" in synced.stderr

    unconfirmed = run_cli("sync", "--discard", run_id[:8], env=env)
    assert unconfirmed.returncode != 0
    assert "add --yes" in unconfirmed.stderr
    assert (servers.tmp / "mid" / run_id).is_dir()
    answered = discard_on_a_terminal(env, "revoked", "n\n")
    assert answered[0] != 0
    assert "for good?" in answered[1]
    assert (servers.tmp / "mid" / run_id).is_dir()
    answered = discard_on_a_terminal(env, "revoked", "y\n")
    assert answered[0] == 0, answered[1]
    assert f"discarded run revoked ({run_id}): 20 points" in answered[1]
    assert not (servers.tmp / "mid" / run_id).exists()
    assert run_cli("sync", env=env).stdout.strip() == "nothing to sync"


ARTIFACT_ONLY = textwrap.dedent(
    """
    import sys, time
    import safeboard

    run = safeboard.init(project="mnist", name="files", flush_interval=0.1)
    run.log({"loss": 1.0}, step=0)
    assert run.flush(10)
    print(run.id, flush=True)
    sys.stdin.readline()  # the key is revoked now
    run.log_artifact(sys.argv[1], "weights.bin", "model")
    time.sleep(3)  # the upload is refused meanwhile
    run.finish(timeout=5)
    """
)


def test_an_upload_refused_mid_run_is_said_once_like_a_batch(servers: Servers) -> None:
    """A run that only uploads files after its key was revoked hears of it too (before,
    the uploader paused in silence and finish() blamed nothing)."""
    key = make_key(servers.tls, "write")
    env = servers.tls_env(key, SAFEBOARD_SPOOL_DIR=str(servers.tmp / "files"))
    weights = servers.tmp / "weights.bin"
    weights.write_bytes(b"w" * 50_000)

    def revoke() -> None:
        revoked = run_cli("key", "revoke", key.split("_")[1], data_dir=servers.tls.data_dir)
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(VERIFIED_FOR + 0.2)  # a server trusts a verified key that long (issue 13)

    path = servers.tmp / "files.py"
    run_id, _, err = pause_and_meanwhile(env, path, ARTIFACT_ONLY, [str(weights)], revoke)
    refusals = [line for line in err.splitlines() if "refused its data" in line]
    assert len(refusals) == 1, err
    assert "this API key was revoked" in refusals[0]
    meta = json.loads((servers.tmp / "files" / run_id / "run.json").read_text())
    assert meta["last_error"]["code"] == "key_revoked"
    assert any("1 artifact" in line for line in err.splitlines() if "not delivered" in line), err


def test_grant_removed_mid_run_is_said_once_with_the_fix(servers: Servers) -> None:
    added = run_cli("user", "add", "carol", data_dir=servers.tls.data_dir)
    assert added.returncode == 0, added.stderr
    carol = make_key(servers.tls, "write", "--user", "carol")
    admin = {"Authorization": f"Bearer {make_key(servers.tls, 'admin')}"}
    with servers.tls.client() as client:
        made = client.post("/api/v1/projects", json={"name": "team"}, headers=admin)
        assert made.status_code == 201, made.text
        grant = "/api/v1/projects/team/grants/carol"
        assert client.put(grant, json={"role": "editor"}, headers=admin).status_code == 204

    def remove_the_grant() -> None:
        with servers.tls.client() as client:
            assert client.delete(grant, headers=admin).status_code == 204
        time.sleep(ACCESS_FOR + 0.2)  # a server trusts a run's access that long (issue 13)

    env = servers.tls_env(carol, SAFEBOARD_SPOOL_DIR=str(servers.tmp / "grant"))
    run_id, _, err = train_and_meanwhile(
        env, servers.tmp / "grant.py", "team", "ungranted", remove_the_grant
    )
    refusals = [line for line in err.splitlines() if "refused its data" in line]
    assert len(refusals) == 1, err
    assert f"run {run_id} is out of reach (no such run)" in refusals[0]
    assert "your grant on project 'team' was removed; ask its owner" in refusals[0]
    (last,) = [line for line in err.splitlines() if "not delivered" in line]
    assert "20 points not delivered: run" in last
    meta = json.loads((servers.tmp / "grant" / run_id / "run.json").read_text())
    assert meta["last_error"]["code"] == "not_found"


def discard_on_a_terminal(env: dict[str, str], ref: str, answer: str) -> tuple[int, str]:
    """`safeboard sync --discard REF` on a pseudo-terminal, answering its question."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "safeboard", "sync", "--discard", ref],
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    os.write(leader, answer.encode())
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return process.wait(timeout=60), seen.decode(errors="replace")


def test_public_exceptions_are_the_error_tree() -> None:
    import safeboard
    from safeboard import errors

    assert issubclass(safeboard.InvalidApiKey, safeboard.AuthenticationError)
    assert safeboard.AuthenticationError is errors.Unauthenticated
    assert issubclass(safeboard.InsufficientScope, safeboard.PermissionDenied)
    assert safeboard.PermissionDenied is errors.Forbidden
    assert issubclass(safeboard.InvalidUrl, safeboard.ConfigError)
    for name in safeboard.__all__:
        assert getattr(safeboard, name) is not None


OFFLINE = textwrap.dedent(
    """
    import sys
    import safeboard

    run = safeboard.init(project="p", name="away", mode="offline", quiet=sys.argv[1] == "quiet")
    run.log({"loss": 1.0})
    run.finish(timeout=1)
    """
)


def test_offline_init_names_the_spool_unless_quiet(tmp_path: Path) -> None:
    path = tmp_path / "offline.py"
    path.write_text(OFFLINE)
    env = cli_env(tmp_path / "nowhere")
    env["SAFEBOARD_SPOOL_DIR"] = str(tmp_path / "spool")

    def stderr(how: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, str(path), how],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr.splitlines()

    first = stderr("say")[0]
    assert first.startswith(f"safeboard: run away is offline: kept in {tmp_path / 'spool'}/")
    assert first.endswith("send it with `safeboard sync`")
    quiet = stderr("quiet")
    assert not any("is offline" in line for line in quiet)
    assert any("not delivered yet" in line for line in quiet)  # what is left is always said
