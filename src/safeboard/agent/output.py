"""A task's output on the agent's machine: the child's stdout and stderr are pipes that a
reader thread each splits into lines; each line is redacted (agent/redact.py) and
appended to the attempt's log file, ``<state dir>/logs/task-<id>.<attempt>.log`` (0600),
which is also the spool its shipper (agent/shipper.py) sends from.

The file holds one line per line of output, its stream first: ``o <text>`` (stdout) or
``e <text>`` (stderr). A line longer than ``MAX_LOG_LINE_BYTES`` bytes keeps its first
part (cut at a character's edge) and ends with ``CUT_MARK``; the rest, up to the next
newline, is dropped. Bytes that are not UTF-8, and NUL, become U+FFFD; a line's final
carriage return goes (``\\r\\n``), others stay (a progress bar's)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO

from safeboard.agent.redact import Redactor
from safeboard.client.config import private_dir
from safeboard.vocabulary import MAX_LOG_LINE_BYTES

__all__ = ["CUT_MARK", "STREAM_TAGS", "Spool", "parse_line"]

CUT_MARK = f" [safeboard agent: line cut at {MAX_LOG_LINE_BYTES} bytes]"
STREAM_TAGS = {"stdout": b"o", "stderr": b"e"}
_STREAM_OF = {tag: name for name, tag in STREAM_TAGS.items()}
_CUT_MARK = CUT_MARK.encode()
_READ = 64 * 1024


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return text[:-1] if text.endswith("\r") else text


def _cut(raw: bytes) -> bytes:
    """The first ``MAX_LOG_LINE_BYTES`` bytes, less a character cut in two."""
    end = MAX_LOG_LINE_BYTES
    while end > MAX_LOG_LINE_BYTES - 4 and raw[end] & 0xC0 == 0x80:
        end -= 1
    return raw[:end]


def parse_line(line: bytes) -> tuple[str, str]:
    """A line of the file (no newline) as (stream, text)."""
    stream = _STREAM_OF.get(line[:1])
    if stream is None or line[1:2] != b" ":  # not written by this module: as stdout
        return "stdout", _text(line)
    return stream, line[2:].decode("utf-8", errors="replace")


class Spool:
    """The attempt's log file: ``write`` from any thread; ``size`` and ``lines`` grow."""

    def __init__(self, path: Path, redactor: Redactor | None = None) -> None:
        private_dir(path.parent)
        self.path = path
        self.redactor = redactor or Redactor()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._lock = threading.Lock()
        self.size = os.fstat(fd).st_size  # bytes in the file
        self.lines = 0  # lines written by this process
        self.changed = threading.Event()  # set at each write: the shipper looks

    def write(self, stream: str, text: str, *, cut: bool = False) -> None:
        """One line of ``stream``, redacted, to the file. A line that redaction made longer
        than the bound (``[redacted]`` is longer than a short value) is cut again."""
        clean = (self.redactor.redact_cut(text) if cut else self.redactor.redact(text)).encode()
        if len(clean) > MAX_LOG_LINE_BYTES:
            clean, cut = _cut(clean), True
        data = STREAM_TAGS[stream] + b" " + clean + (_CUT_MARK if cut else b"") + b"\n"
        with self._lock:
            if self._file.closed:  # a process outside the group, after the attempt ended
                return
            self._file.write(data)
            self._file.flush()
            self.size += len(data)
            self.lines += 1
        self.changed.set()

    def reader(self, stream: str, pipe: IO[bytes]) -> threading.Thread:
        """A started thread that reads ``pipe`` to its end, line by line, into the file."""
        thread = threading.Thread(target=self._read, args=(stream, pipe.fileno()),
                                  name=f"{self.path.stem}-{stream}", daemon=True)  # fmt: skip
        thread.start()
        return thread

    def _read(self, stream: str, fd: int) -> None:
        pending, skipping = b"", False  # skipping: the rest of a line that was cut
        while chunk := os.read(fd, _READ):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                if skipping:
                    skipping = False
                else:
                    self._line(stream, raw)
            if skipping:
                pending = b""
            elif len(pending) > MAX_LOG_LINE_BYTES:
                self._line(stream, pending)
                pending, skipping = b"", True
        if pending and not skipping:
            self._line(stream, pending)

    def feed(self, stream: str, raw: bytes) -> None:
        """One line of raw output (no newline), cut to the bound, into the file."""
        self._line(stream, raw)

    def _line(self, stream: str, raw: bytes) -> None:
        if len(raw) > MAX_LOG_LINE_BYTES:
            self.write(stream, _text(_cut(raw)), cut=True)
        else:
            self.write(stream, _text(raw))

    def close(self) -> None:
        with self._lock:
            self._file.close()
