"""A failed start takes back what it made (server/undo.py), on real files: new entries of
the data directory go, whole; what was there stays, a found database's -wal and -shm
included; a SQLite file and an artifact store outside the data directory go only when the
start made them."""

from __future__ import annotations

from pathlib import Path

from safeboard.server.undo import StartRecord


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_what_the_start_made_goes_and_what_was_there_stays(tmp_path: Path) -> None:
    data = tmp_path / "data"
    found = [_write(data / name, name) for name in ("server.lock", "safeboard.db", "x.toml")]
    _write(data / "artifacts" / "old")
    elsewhere = _write(tmp_path / "shared" / "kept.db", "kept")
    made = StartRecord(data)
    made.watch_database(tmp_path / "shared" / "new.db")
    made.watch_database(elsewhere)
    made.watch(tmp_path / "store" / "files")
    # What a start writes before it fails.
    for name in ("safeboard.db-wal", "safeboard.db-shm", "secrets.toml", "server.sock"):
        _write(data / name)
    _write(data / "tls" / "ca.pem")
    _write(data / "artifacts" / "new")  # inside a directory that was there: left
    _write(tmp_path / "shared" / "new.db")
    _write(tmp_path / "shared" / "new.db-wal")
    _write(tmp_path / "shared" / "kept.db-wal")
    _write(tmp_path / "store" / "files" / "ab" / "cd")

    removed = made.undo()

    names = {p.name for p in removed}
    assert names == {"secrets.toml", "server.sock", "tls", "new.db", "new.db-wal", "files"}
    assert sorted(p.name for p in data.iterdir()) == [
        "artifacts", "safeboard.db", "safeboard.db-shm", "safeboard.db-wal", "server.lock",
        "x.toml",
    ]  # fmt: skip
    assert all(path.read_text() == path.name for path in found)
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["kept.db", "kept.db-wal"]
    assert elsewhere.read_text() == "kept"
    assert (data / "artifacts" / "old").exists()
    assert not (tmp_path / "store" / "files").exists()


def test_nothing_made_nothing_removed(tmp_path: Path) -> None:
    _write(tmp_path / "server.lock")
    made = StartRecord(tmp_path)
    made.watch(tmp_path / "artifacts")  # inside the data directory and absent: never made
    assert made.undo() == []
    assert [p.name for p in tmp_path.iterdir()] == ["server.lock"]
