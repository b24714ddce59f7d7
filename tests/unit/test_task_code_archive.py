"""A task's code archive on real files: packing (deterministic bytes, .gitignore and
.safeboardignore rules, nested files, negations, directories, .git never, links kept
inside and left out when they point out, the size limit naming the biggest files), and
unpacking crafted archives on the agent (``..``, absolute paths, links and hard links out,
devices, a member that claims more than the bound, a PAX header bomb, a gzip bomb, too
many entries): refused with a reason, nothing written outside the directory."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from safeboard.agent.unpack import CodeRefused, unpack
from safeboard.client.code import CodeTooLarge, code_files, pack

LIMIT = 1 << 20
ABSOLUTE = "/var/tmp/safeboard-test-absolute-member"  # noqa: S108  (never written: refused)


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def names(root: Path) -> list[str]:
    return [f.path for f in code_files(root)]


def test_the_same_tree_packs_to_the_same_bytes(tmp_path: Path) -> None:
    files = {"train.py": "print('hi')\n", "pkg/model.py": "x = 1\n", "data/a.csv": "1,2\n"}
    one = tree(tmp_path / "one", files)
    two = tree(tmp_path / "two", dict(reversed(files.items())))
    os.utime(two / "train.py", (1, 1))  # other times, other owner-independent bytes
    (two / "pkg" / "model.py").chmod(0o600)
    first, second = pack(one, limit=LIMIT), pack(two, limit=LIMIT)
    try:
        assert first.sha256 == second.sha256
        assert first.path.read_bytes() == second.path.read_bytes()
        assert first.files == 3
        with tarfile.open(first.path) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == ["data/a.csv", "pkg/model.py", "train.py"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}
    finally:
        first.discard()
        second.discard()
    (one / "train.py").write_text("print('changed')\n")
    changed = pack(one, limit=LIMIT)
    assert changed.sha256 != first.sha256
    changed.discard()
    assert not changed.path.exists()


def test_gitignore_rules(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        ".gitignore": "*.log\n!keep.log\nbuild/\n/top.txt\ncheckpoints/**/*.pt\n",
        "a.log": "", "keep.log": "", "top.txt": "", "sub/top.txt": "",
        "build/x.o": "", "sub/build/y.o": "", "checkpoints/r1/m.pt": "",
        "checkpoints/r1/m.json": "",
        "sub/.gitignore": "*.tmp\n!important.log\n",  # nested: relative to sub/
        "sub/t.tmp": "", "sub/important.log": "", "sub/other.log": "", "t.tmp": "",
        ".safeboardignore": "data/\n", "data/big.bin": "", "datafile": "",
        ".git/HEAD": "ref: refs/heads/main\n", "sub/.git": "gitdir: ../x\n",
        "src/main.py": "",
    })  # fmt: skip
    assert names(root) == [
        ".gitignore", ".safeboardignore", "checkpoints/r1/m.json", "datafile", "keep.log",
        "src/main.py", "sub/.gitignore", "sub/important.log", "sub/top.txt", "t.tmp",
    ]  # fmt: skip


def test_links_inside_are_kept_and_links_out_are_left_out(tmp_path: Path) -> None:
    root = tree(tmp_path / "code", {"a/real.py": "x = 1\n"})
    (root / "inside").symlink_to("a/real.py")
    (root / "a" / "up").symlink_to("../a/real.py")
    (root / "out").symlink_to("/etc/passwd")
    (root / "a" / "escape").symlink_to("../../outside")
    (root / "linked-dir").symlink_to(tmp_path)  # never followed
    skipped: list[str] = []
    found = {f.path: f.link for f in code_files(root, skipped)}
    assert found == {"a/real.py": None, "a/up": "../a/real.py", "inside": "a/real.py"}
    assert sorted(skipped) == ["a/escape", "linked-dir", "out"]


def test_over_the_limit_names_the_biggest_files(tmp_path: Path) -> None:
    root = tree(tmp_path, {"train.py": "print(1)\n", "weights.bin": os.urandom(300_000),
                           "data/big.npy": os.urandom(200_000), "small.txt": "x"})  # fmt: skip
    with pytest.raises(CodeTooLarge) as refused:
        pack(root, limit=100_000, workdir=tmp_path)
    message = refused.value.message
    assert "weights.bin (" in message
    assert message.index("weights.bin") < message.index("data/big.npy")
    for fix in (".gitignore", ".safeboardignore", "--no-code"):
        assert fix in message
    assert not list(tmp_path.glob("safeboard-code-*"))  # the partial archive is gone


# --- unpacking on the agent ---------------------------------------------------------------


def archive(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path = tmp_path / "code.tar.gz"
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def test_a_packed_tree_unpacks_whole(tmp_path: Path) -> None:
    root = tree(tmp_path / "code", {"train.py": "print(1)\n", "pkg/m.py": "x = 1\n"})
    (root / "link").symlink_to("pkg/m.py")
    (root / "train.py").chmod(0o755)
    packed = pack(root, limit=LIMIT)
    dest = tmp_path / "task"
    dest.mkdir()
    assert unpack(packed.path, dest, limit=LIMIT) == 3
    assert (dest / "train.py").read_text() == "print(1)\n"
    assert os.access(dest / "train.py", os.X_OK)
    assert (dest / "link").read_text() == "x = 1\n"
    packed.discard()


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([member("../x", b"evil")], "points out of"),
        ([member("a/../../x", b"evil")], "points out of"),
        ([member(ABSOLUTE, b"evil")], "points out of"),
        ([member("etc", kind=tarfile.SYMTYPE, link="/etc")], "absolute"),
        ([member("up", kind=tarfile.SYMTYPE, link="../../..")], "outside"),
        ([member("up", kind=tarfile.SYMTYPE, link=".."), member("up/x", b"evil")], "outside"),
        ([member("hard", kind=tarfile.LNKTYPE, link="/etc/passwd")], "hard link"),
        ([member("dev", kind=tarfile.CHRTYPE)], "device or special file"),
        ([member("fifo", kind=tarfile.FIFOTYPE)], "device or special file"),
    ],
)
def test_malicious_archives_are_refused(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], reason: str
) -> None:
    dest = tmp_path / "task" / "dir"
    dest.mkdir(parents=True)
    with pytest.raises(CodeRefused) as refused:
        unpack(archive(tmp_path, *members), dest, limit=LIMIT)
    assert reason in str(refused.value)
    assert not (tmp_path / "task" / "x").exists()
    assert not (tmp_path / "x").exists()
    assert not Path(ABSOLUTE).exists()


def test_a_member_claiming_more_than_the_bound_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("huge.bin")
    info.size = 10 * 1024**3  # claimed; the archive holds a few bytes
    raw = io.BytesIO()
    raw.write(info.tobuf(format=tarfile.PAX_FORMAT) + b"x" * 512)
    path = tmp_path / "claims.tar.gz"
    path.write_bytes(gzip.compress(raw.getvalue()))
    with pytest.raises(CodeRefused, match="unpacks to more than"):
        unpack(path, tmp_path, limit=LIMIT)
    assert not (tmp_path / "huge.bin").exists()


def test_a_pax_header_bomb_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # A PAX extended header whose size claims 4 GiB: tarfile would read it whole.
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 4 * 1024**3
    path = tmp_path / "pax.tar.gz"
    path.write_bytes(gzip.compress(header.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 1024))
    with pytest.raises(CodeRefused):
        unpack(path, tmp_path / "d", limit=LIMIT)


def test_a_gzip_bomb_stops_at_the_bound(tmp_path: Path) -> None:
    data = b"z" * (4 * LIMIT)  # compresses ~1000:1
    path = archive(tmp_path, member("big.bin", data))
    assert path.stat().st_size < LIMIT // 50
    dest = tmp_path / "task"
    dest.mkdir()
    with pytest.raises(CodeRefused, match="unpacks to more than"):
        unpack(path, dest, limit=LIMIT)


def test_too_many_entries_and_garbage(tmp_path: Path) -> None:
    many = [member(f"f{i}", b"x") for i in range(20)]
    with pytest.raises(CodeRefused, match="more than 10 entries"):
        unpack(archive(tmp_path, *many), tmp_path / "d", limit=LIMIT, max_members=10)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(CodeRefused, match=r"not a readable tar\.gz"):
        unpack(garbage, tmp_path / "d", limit=LIMIT)
