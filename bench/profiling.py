"""Optional: sample a server with py-spy while a load runs, and sum the samples per function
(self time: the innermost frame; total time: anywhere on the stack)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "top_frames"]

# Frames on nearly every stack (entry points, the event loop, thread pools, the ASGI
# middleware chain): they say nothing about where the time goes, so "total" leaves them out.
_ROOTS = (
    "<frozen runpy>",
    "click/",
    "safeboard/__main__",
    "safeboard/cli/",
    "server/run.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/base_events.py",
    "asyncio/runners.py",
    "asyncio/events.py",
    "threading.py",
    "anyio/_backends",
    "concurrent/futures",
    "starlette/",
    "fastapi/",
    "uvicorn/protocols",
    "Middleware.__call__",
    "<module> (",
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


class Profiler:
    """``py-spy record`` on ``pid`` for ``seconds``, collapsed stacks to ``out``."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("py-spy")
        if exe is None:
            return
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
             "--rate", "200", "--format", "raw", "--nonblocking",
             "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.proc is not None

    def finish(self) -> Path | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self.out if self.out.exists() else None


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def top_frames(
    raw: Path, count: int = 10
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top self, top total) from py-spy's raw (collapsed) output, idle frames
    (waiting in select/epoll or on a lock) excluded."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        # The first frame is the thread (e.g. "process 123:..." / "thread (0x...)"): skip it.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        leaf = frames[-1]
        if any(idle in leaf for idle in ("select (", "poll (", "wait (", "_wait_for_tstate_lock")):
            continue
        samples += int(n)
        own[leaf] += int(n)
        for frame in set(frames):
            if not any(root in frame for root in _ROOTS):
                total[frame] += int(n)
    return samples, own.most_common(count), total.most_common(count)
