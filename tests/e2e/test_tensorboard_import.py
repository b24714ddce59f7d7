"""Issue 15, "TensorBoard logs into safeboard": ``safeboard import tensorboard`` as a
subprocess against a real server, on event files written by TensorBoard's own writer
(TF2-shaped summaries) and by tensorboardX; re-import stores nothing twice; a corrupt
file is named with its offset and the others are imported; ``--follow`` and
``run.sync_tensorboard()`` pick up appended events and wait for a half-written record."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import safeboard
from safeboard.client import Client
from safeboard.client.credentials import resolve_server
from safeboard.sdk.tbimport import import_tensorboard, run_dirs, run_id_for
from tests.e2e.conftest import ServerProcess, cli_env, free_port, run_cli, start_server
from tests.support.eventfiles import tensorboard_tf2_run, tensorboardx_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = start_server(tmp_path_factory.mktemp("tb-import"))
    yield started
    started.stop()


@pytest.fixture
def client(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Client]:
    monkeypatch.setenv("SAFEBOARD_DATA_DIR", str(server.data_dir))
    monkeypatch.setenv("SAFEBOARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SAFEBOARD_SPOOL_DIR", str(tmp_path / "spool"))
    for name in ("SAFEBOARD_URL", "SAFEBOARD_API_KEY", "SAFEBOARD_CA_CERT"):
        monkeypatch.delenv(name, raising=False)
    with Client(resolve_server().client()) as made:
        yield made


def cli(server: ServerProcess, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {**cli_env(server.data_dir), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
    done = run_cli(*args, env=env, timeout=180)
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout, done.stderr


def values(client: Client, run_id: str, key: str) -> list[tuple[int, float]]:
    points = client.points(run_id, key)
    return list(zip(points.steps, points.values, strict=True))


def test_import_brings_scalars_images_text_hparams_and_histograms_once(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    logdir = tmp_path / "logs"
    tensorboard_tf2_run(logdir / "tf2")
    tensorboardx_run(logdir / "tbx")
    code, out, err = cli(server, tmp_path, "import", "tensorboard", str(logdir), "-p", "tb")
    assert code == 0, err
    assert {line.split(" (")[0] for line in out.splitlines()} == {"tf2", "tbx", "tbx/hp"}

    tf2 = client.run(run_id_for("tb", logdir / "tf2"))
    assert (tf2.name, tf2.status.value) == ("tf2", "finished")
    assert tf2.system["tensorboard"]["dir"] == str((logdir / "tf2").resolve())
    # TF2 scalars: a float_val tensor, then a tensor_content double; metadata on the first only
    assert values(client, tf2.id, "acc") == [(0, 0.5), (1, 1.5), (2, 2.5)]
    assert values(client, tf2.id, "loss/double") == [(0, 0.0), (1, 2.0), (2, 4.0)]
    assert tf2.config == {"lr": 0.01, "act": "relu", "deep": True}
    # text kept as it was written: the dashboard shows notes as text, never as HTML
    assert "notes (step 1):\n<script>alert(1)</script> **hi**" in tf2.notes
    arts = {a.name: a for a in client.artifacts(tf2.id)}
    assert arts["sample/step-1.png"].kind.value == "image"
    assert arts["sample/step-1.png"].content_type == "image/png"
    (histograms,) = [a for n, a in arts.items() if n.startswith("histograms/")]
    assert histograms.kind.value == "table"

    tbx = client.run(run_id_for("tb", logdir / "tbx"))
    assert values(client, tbx.id, "loss") == [
        (i, pytest.approx(1.0 / (i + 1), rel=1e-6)) for i in range(5)
    ]
    assert "<img src=x onerror=alert(1)> *md*" in tbx.notes
    assert {a.name for a in client.artifacts(tbx.id)} >= {"digits/step-3.png"}
    hp = client.run(run_id_for("tb", logdir / "tbx" / "hp"))
    assert hp.config == {"lr": 0.1, "optimizer": "adam"}
    assert values(client, hp.id, "hp/accuracy") == [(0, pytest.approx(0.9, rel=1e-6))]

    # again: the same runs, nothing stored twice
    code, _, err = cli(server, tmp_path, "import", "tensorboard", str(logdir), "-p", "tb")
    assert code == 0, err
    assert len(values(client, tf2.id, "acc")) == 3
    assert len(values(client, tbx.id, "loss")) == 5
    assert len(list(client.artifacts(tf2.id))) == len(arts)
    assert client.run(tf2.id).notes == tf2.notes


def test_a_corrupt_record_is_named_with_its_offset_and_the_other_files_import(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    logdir = tmp_path / "logs"
    tensorboardx_run(logdir / "bad", steps=5)
    tensorboardx_run(logdir / "good", steps=5)
    (bad_file,) = (logdir / "bad").glob("*tfevents*")
    data = bytearray(bad_file.read_bytes())
    data[40 + 12 + 3] ^= 0xFF  # the data of the second record (the first scalar)
    bad_file.write_bytes(bytes(data))
    code, _, err = cli(server, tmp_path, "import", "tensorboard", str(logdir), "-p", "tbbad")
    assert code == 1
    assert f"{bad_file}: corrupt record at byte offset 40: the data's checksum" in err
    good = client.run(run_id_for("tbbad", logdir / "good"))
    assert len(values(client, good.id, "loss")) == 5


def test_the_command_starts_without_trio_and_httpx_command_line(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    """P7 times the command's start too: httpcore's trio backend and httpx's own command
    line (pygments, rich), installed here, are not imported (safeboard.cli.lean)."""
    pytest.importorskip("trio")
    pytest.importorskip("pygments")
    logdir = tmp_path / "logs"
    tensorboardx_run(logdir / "lean", steps=2)
    env = {**cli_env(server.data_dir), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # each module imported (or tried), on stderr
    done = run_cli(
        "import", "tensorboard", str(logdir), "-p", "tblean", env=env, timeout=180, fresh=True
    )  # a new interpreter: what it imports is the test
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "httpcore._synchronization" in imported
    assert {"trio._core", "pygments.util", "rich.console"}.isdisjoint(imported)  # tried, no more
    assert len(values(client, run_id_for("tblean", logdir / "lean"), "loss")) == 2


def test_follow_picks_up_appended_events_and_waits_for_a_half_written_record(
    client: Client, tmp_path: Path
) -> None:
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir = tmp_path / "live"
    writer = EventFileWriter(str(logdir / "run"))
    writer.add_event(scalar_event("loss", 1.0, 0))
    writer.flush()  # TensorBoard's flush waits for its queue (tensorboardX's does not)
    stop = threading.Event()
    follower = threading.Thread(
        target=lambda: import_tensorboard(
            client, logdir, "tbfollow", follow=True, poll=0.2, stop=stop
        )
    )
    follower.start()
    run_id = run_id_for("tbfollow", logdir / "run")
    try:
        _until(lambda: len(_safe_values(client, run_id, "loss")) == 1)
        writer.add_event(scalar_event("loss", 0.5, 1))
        writer.flush()
        _until(lambda: len(_safe_values(client, run_id, "loss")) == 2)
        # a record cut short (a writer in the middle of a write): waited for, then read
        (path,) = (logdir / "run").glob("*tfevents*")
        before = path.stat().st_size
        writer.add_event(scalar_event("loss", 0.25, 2))
        writer.close()
        whole = path.read_bytes()
        with path.open("r+b") as file:
            file.truncate(before + 10)
        time.sleep(1.0)
        assert len(_safe_values(client, run_id, "loss")) == 2
        path.write_bytes(whole)
        _until(lambda: len(_safe_values(client, run_id, "loss")) == 3)
        # a rotated file (a new writer in the same directory) is followed too
        second = EventFileWriter(str(logdir / "run"), filename_suffix=".2")
        second.add_event(scalar_event("loss", 0.125, 3))
        second.close()
        _until(lambda: len(_safe_values(client, run_id, "loss")) == 4)
    finally:
        stop.set()
        follower.join(60)
    assert values(client, run_id, "loss") == [(0, 1.0), (1, 0.5), (2, 0.25), (3, 0.125)]
    # imported again in one go afterwards: still once
    import_tensorboard(client, logdir, "tbfollow")
    assert len(values(client, run_id, "loss")) == 4


def scalar_event(tag: str, value: float, step: int) -> object:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary)


def test_run_sync_tensorboard_imports_what_the_script_writes(
    client: Client, tmp_path: Path
) -> None:
    from tensorboardX import SummaryWriter

    logdir = tmp_path / "tb"
    run = safeboard.init(project="tbsync", name="synced", quiet=True)
    run.sync_tensorboard(logdir)
    writer = SummaryWriter(str(logdir))
    for step in range(4):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.add_text("about", "<b>not bold</b>")
    writer.close()
    run.log({"own": 1.0}, step=0)
    run.finish()
    assert [s for s, _ in values(client, run.id, "train/loss")] == [0, 1, 2, 3]
    assert "<b>not bold</b>" in client.run(run.id).notes
    assert values(client, run.id, "own") == [(0, 1.0)]
    # The event file is kept as an artifact of the run, for the TensorBoard button.
    (written,) = logdir.glob("*.tfevents.*")
    kept = [(a.name, a.size) for a in client.artifacts(run.id) if a.name.startswith("tensorboard/")]
    assert kept == [(f"tensorboard/{written.name}", written.stat().st_size)]


def _safe_values(client: Client, run_id: str, key: str) -> list[tuple[int, float]]:
    try:
        return values(client, run_id, key)
    except safeboard.errors.NotFound:
        return []


def _until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("not seen in time")


def test_histogram_rows_are_json_lines(client: Client, tmp_path: Path) -> None:
    logdir = tmp_path / "h"
    tensorboard_tf2_run(logdir)
    (done,) = import_tensorboard(client, logdir, "tbhist")
    assert done.counts.histograms == 1
    (art,) = [a for a in client.artifacts(done.run_id) if a.name.startswith("histograms/")]
    body = client.api.get(f"/api/v1/artifacts/{art.id}/content").content
    (row,) = [json.loads(line) for line in body.decode().splitlines()]
    assert row == {"tag": "weights", "step": 2, "wall_time": 0.0, "limits": [1.0, 2.0],
                   "counts": [3.0, 5.0], "min": 0.0, "max": 2.0, "num": 8.0, "sum": None,
                   "sum_squares": None}  # fmt: skip


def test_a_pass_whose_batches_are_refused_is_read_again_whole(
    client: Client, tmp_path: Path
) -> None:
    """A pass that fails (here: a revoked key) leaves the files where they were, so the
    next pass sends every point and text once, not only what came after the failure."""
    import dataclasses

    from safeboard.errors import Unauthenticated
    from safeboard.sdk.tbbatch import BatchPoster
    from safeboard.sdk.tbrun import RunImport

    logdir = tmp_path / "retry"
    tensorboardx_run(logdir, steps=5)
    client.create_project("tbretry")
    run_id = client.create_run("tbretry", name="retry").id
    access = dataclasses.replace(resolve_server(), api_key="sb_" + "0" * 16 + "_" + "1" * 43)
    with Client(access.client()) as revoked:
        importer = RunImport(revoked, run_id, logdir)
        with pytest.raises(Unauthenticated):
            importer.pass_()
        (state,) = importer.files.values()
        assert state.reader.offset == 0
        importer.client, importer._poster = client, BatchPoster(client, run_id, importer._counted)
        importer.pass_()
    assert len(values(client, run_id, "loss")) == 5
    assert (importer.counts.texts, importer.counts.points) == (1, 5)
    assert client.run(run_id).notes.count("<img src=x onerror=alert(1)> *md*") == 1


def test_the_follow_command_reads_until_sigterm_then_finishes_the_run(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir = tmp_path / "cmd"
    writer = EventFileWriter(str(logdir / "run"))
    writer.add_event(scalar_event("loss", 1.0, 0))
    writer.flush()
    env = {**cli_env(server.data_dir), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
    command = [sys.executable, "-m", "safeboard", "import", "tensorboard", str(logdir)]
    command += ["-p", "tbcmd", "--follow", "--poll", "0.2"]
    follower = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_id = run_id_for("tbcmd", logdir / "run")
    try:
        _until(lambda: len(_safe_values(client, run_id, "loss")) == 1)
        assert client.run(run_id).status.value == "running"
        writer.add_event(scalar_event("loss", 0.5, 1))
        writer.close()
        _until(lambda: len(_safe_values(client, run_id, "loss")) == 2)
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert b"run (" in out
    assert b"Traceback" not in err
    assert client.run(run_id).status.value == "finished"


def test_runs_of_several_directories_are_made_once_each_into_a_new_project(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    """The command makes every run before it reads (beside the reader's modules loading):
    three directories into a project that does not exist yet, each run made once with
    its points, and the project made once."""
    logdir = tmp_path / "logs"
    for name in ("a", "b/c", "d"):
        tensorboardx_run(logdir / name, steps=3)
    code, out, err = cli(server, tmp_path, "import", "tensorboard", str(logdir), "-p", "tbmany")
    assert code == 0, err
    made = sorted(line.split(" (")[0] for line in out.splitlines())
    assert made == sorted(run_dirs(logdir))
    assert {"a", "b/c", "d"} <= set(made)
    for name in ("a", "b/c", "d"):
        assert len(values(client, run_id_for("tbmany", logdir / name), "loss")) == 3
    assert [p.name for p in client.projects() if p.name == "tbmany"] == ["tbmany"]
    again = cli(server, tmp_path, "import", "tensorboard", str(logdir), "-p", "tbmany")
    assert again[0] == 0, again[2]
    assert len(values(client, run_id_for("tbmany", logdir / "b/c"), "loss")) == 3


def test_an_import_with_the_server_away_says_so_without_a_traceback(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    tensorboardx_run(logdir / "away", steps=2)
    env = {**cli_env(tmp_path / "nowhere"), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
    env.update(SAFEBOARD_URL=f"http://127.0.0.1:{free_port()}", SAFEBOARD_API_KEY="sb_nothing")
    done = run_cli("import", "tensorboard", str(logdir), "-p", "tbaway", env=env, timeout=180)
    assert done.returncode == 2, done.stderr  # the CLI's code for a server not reached
    assert "Traceback" not in done.stderr
    assert "no safeboard server answers at http://127.0.0.1:" in done.stderr, done.stderr
