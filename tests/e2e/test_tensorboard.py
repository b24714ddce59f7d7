"""TensorBoard itself behind the server's TLS and login, as a new user meets it: a real
server over TLS, `safeboard tensorboard --logdir` as a subprocess, the real TensorBoard on
a real event file, headless Chromium (docs/tensorboard.md, docs/security.md "TensorBoard's
origin")."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import chromium, spki_sha256
from tests.e2e.conftest import ServerProcess, cli_env, run_cli, start_server
from tests.support.tb_events import write_scalars

pytestmark = pytest.mark.e2e

ORIGIN_LINE = re.compile(r"^  TensorBoard's origin (https?://\S+) ")
OPEN_LINE = re.compile(r"^  open (\S+/enter#ticket=\S+)$", re.MULTILINE)
TIMEOUT_MS = 60_000  # TensorBoard's 6 MB bundle on a loaded 2-core machine


def tb_origin(server: ServerProcess) -> str:
    found = [m.group(1) for m in map(ORIGIN_LINE.match, server.banner) if m]
    assert len(found) == 1, server.banner
    return found[0]


def open_link(output: str) -> str:
    found = OPEN_LINE.findall(output)
    assert len(found) == 1, output
    return str(found[0])


def test_tensorboard_through_the_link_and_refusals(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--tls")
    try:
        logs = tmp_path / "logs"
        write_scalars(logs / "run1")
        origin = tb_origin(server)
        assert origin.startswith("https://127.0.0.1:")
        port = int(origin.rsplit(":", 1)[1])
        assert port != server.port
        made = run_cli("tensorboard", "--logdir", str(logs), data_dir=server.data_dir)
        assert made.returncode == 0, made.stderr
        link = open_link(made.stdout)
        assert link.startswith(f"{origin}/enter#ticket=")
        # Another admin's own instance, opened through the API with her key.
        assert (
            run_cli("user", "add", "carol", "--role", "admin", data_dir=server.data_dir).returncode
            == 0
        )
        key = run_cli(
            "key", "create", "--name", "t", "--user", "carol", "--scope", "admin",
            data_dir=server.data_dir,
        )  # fmt: skip
        assert key.returncode == 0, key.stderr
        with server.client() as client:
            theirs = client.post(
                "/api/v1/tensorboards",
                json={"logdir": str(logs)},
                headers={"Authorization": f"Bearer {key.stdout.strip()}"},
            )
        assert theirs.status_code == 200, theirs.text
        spki = spki_sha256(port)
        assert spki == spki_sha256(server.port)  # the same certificate
        with chromium(f"--ignore-certificate-errors-spki-list={spki}") as browser:
            page, _ = browser.new_page()
            page.goto(link)
            page.wait_for_url(re.compile(r"/tb/[0-9a-f]+/"), timeout=TIMEOUT_MS)
            assert "ticket" not in page.url
            board = page.url.split("#", 1)[0]
            page.goto(f"{board}#scalars")
            expect(page.get_by_text("train/loss").locator("visible=true").first).to_be_visible(
                timeout=TIMEOUT_MS
            )
            cookies = page.context.cookies()
            (mine,) = [c for c in cookies if c["name"].startswith("__Host-sbtb-")]
            assert (mine["httpOnly"], mine["secure"], mine["sameSite"]) == (True, True, "Strict")

            # Without a session: 404, nothing of TensorBoard.
            stranger, _ = browser.new_page()
            refused = stranger.goto(board)
            assert refused is not None
            assert refused.status == 404
            # The used ticket: the entry page says so and lets nobody in.
            stranger.goto(link)
            expect(stranger.get_by_text("used or has expired")).to_be_visible(timeout=TIMEOUT_MS)
            assert not [
                c for c in stranger.context.cookies() if c["name"].startswith("__Host-sbtb-")
            ]
            # Carol, in her own TensorBoard, is refused the other admin's.
            other, _ = browser.new_page()
            other.goto(theirs.json()["link"])
            other.wait_for_url(re.compile(r"/tb/[0-9a-f]+/"), timeout=TIMEOUT_MS)
            assert other.url.split("#", 1)[0] != board
            refused = other.goto(board)
            assert refused is not None
            assert refused.status == 404

            # safeboard's own origin, signed in, while TensorBoard runs: no CSP violation
            # (chromium() fails the test on any violation in these watched pages).
            main, _ = browser.new_page(ignore_https_errors=False)
            sign_in = next(line for line in server.banner if "sign in as" in line)
            main.goto(sign_in.rsplit(" ", 1)[1])
            main.wait_for_url(re.compile(r"/$|/projects"), timeout=TIMEOUT_MS)
            expect(main.get_by_test_id("who")).to_be_visible(timeout=TIMEOUT_MS)
    finally:
        server.stop()
    assert not list((server.data_dir / "tensorboard").glob("*/tb.sock"))  # children stopped


def test_tensorboard_command_starts_the_server(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_scalars(logs / "run1")
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "safeboard", "tensorboard", "--logdir", str(logs)],
        env={**cli_env(data_dir), "SAFEBOARD__SERVER__PORT": str(_free_port())},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        output = _read_until(process, OPEN_LINE)
        link = open_link(output)
        origin, ticket = link.split("/enter#ticket=")
        with httpx.Client(base_url=origin, verify=_verify(origin, data_dir), timeout=30) as client:
            entered = client.post("/enter", content=ticket, headers={"Origin": origin})
            assert entered.status_code == 200, entered.text
            board = entered.json()["location"]
            scalars = client.get(f"{board}data/plugin/scalars/scalars?run=run1&tag=train/loss")
            assert scalars.status_code == 200, scalars.text
            assert [point[1] for point in scalars.json()] == list(range(20))
            # Each listener answers with its own application only.
            assert client.get("/api/v1/projects").status_code == 404
            assert client.get("/healthz").status_code == 404
        main = output.split("listening on ", 1)[1].split()[0]
        with httpx.Client(base_url=main, verify=_verify(main, data_dir), timeout=30) as client:
            assert client.get("/healthz").status_code == 200
            assert "Opening TensorBoard" not in client.get("/enter").text
            assert client.get(f"{board}data/runs").status_code in (401, 404)
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        assert "Traceback" not in output + rest
    assert process.returncode == 0
    assert not any((data_dir / "tensorboard").iterdir())


def test_without_the_extra_one_line_says_how_to_get_it(tmp_path: Path) -> None:
    hide = (
        "import sys; sys.modules['tensorboard'] = None; sys.argv[0] = 'safeboard'; "
        "from safeboard.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide, "tensorboard", "--logdir", str(tmp_path)],
        env=cli_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == "TensorBoard is not installed: pip install 'safeboard[tensorboard]'\n"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _verify(origin: str, data_dir: Path) -> ssl.SSLContext | bool:
    if not origin.startswith("https:"):
        return False
    return ssl.create_default_context(cafile=str(data_dir / "tls" / "ca.pem"))


def _read_until(process: subprocess.Popen[str], pattern: re.Pattern[str]) -> str:
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output += line
        if pattern.search(output):
            return output
    raise AssertionError(f"no link within 90 s:\n{output}")


def test_children_end_with_a_killed_server(tmp_path: Path) -> None:
    """A server killed outright (SIGKILL: no cleanup) leaves no TensorBoard running; the
    next start clears the directories the dead one left."""
    logs = tmp_path / "logs"
    write_scalars(logs / "run1")
    data_dir = tmp_path / "data"

    def start() -> tuple[subprocess.Popen[str], Path]:
        process = subprocess.Popen(
            [sys.executable, "-m", "safeboard", "tensorboard", "--logdir", str(logs)],
            env={**cli_env(data_dir), "SAFEBOARD__SERVER__PORT": str(_free_port())},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        open_link(_read_until(process, OPEN_LINE))
        (directory,) = (data_dir / "tensorboard").iterdir()
        return process, directory

    first, left = start()
    children = subprocess.run(
        ["pgrep", "-f", "safeboard.tensorboards.child tb.sock"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    # The child runs in its instance's directory (its socket's path is relative to it).
    (child,) = [int(pid) for pid in children if Path(f"/proc/{pid}/cwd").resolve() == left]
    first.kill()
    first.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(child)
    second, now = start()
    try:
        assert not left.exists()
        assert now != left
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
