"""What ``safeboard restore`` refuses and what ``--exclude-secrets`` leaves out (issue 18):
an archive is untrusted input until its manifest and checksums say otherwise."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from safeboard.backups.archive import MANIFEST


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAFEBOARD_DATA_DIR": str(data_dir), "HOME": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "safeboard", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    made = cli("db", "upgrade", data_dir=tmp_path / "data")
    assert made.returncode == 0, made.stderr
    return tmp_path / "data"


def test_exclude_secrets_leaves_them_out_and_restore_makes_new_ones(
    data_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "b.tar"
    taken = cli("backup", str(archive), "--exclude-secrets", data_dir=data_dir)
    assert taken.returncode == 0, taken.stderr
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "secrets.toml" not in names
    assert not any(name.startswith("tls/") for name in names)
    back = tmp_path / "back"
    put = cli("restore", str(archive), "--data-dir", str(back), data_dir=back)
    assert put.returncode == 0, put.stderr
    assert "new secrets were made" in put.stdout
    old = (data_dir / "secrets.toml").read_text()
    assert (back / "secrets.toml").read_text() != old


def _crafted(path: Path, name: str, data: bytes) -> None:
    manifest = {
        "format": 1,
        "database": "sqlite",
        "secrets": False,
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}},
    }
    with tarfile.open(path, "w") as tar:
        for member, content in ((name, data), (MANIFEST, json.dumps(manifest).encode())):
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))  # fmt: skip


@pytest.mark.parametrize("name", ["../escaped", "/etc/escaped", "artifacts/../../escaped",
                                  "elsewhere/file"])  # fmt: skip
def test_a_member_outside_the_data_directory_is_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.tar"
    _crafted(archive, name, b"payload")
    target = tmp_path / "in" / "data"
    refused = cli("restore", str(archive), "--data-dir", str(target), data_dir=target)
    assert refused.returncode != 0
    assert "refusing it" in refused.stderr
    assert not (tmp_path / "in" / "escaped").exists()
    assert not (tmp_path / "escaped").exists()
    assert not target.exists()


def test_not_a_backup_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file at all" * 100)
    target = tmp_path / "data"
    refused = cli("restore", str(junk), "--data-dir", str(target), data_dir=target)
    assert refused.returncode != 0
    assert "not a safeboard backup" in refused.stderr
    assert "Traceback" not in refused.stderr
