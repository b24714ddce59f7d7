"""Secret values taken out of a task's output before it is written or shipped (S14: secret
values never appear in logs).

``Redactor(values)`` replaces every occurrence of each value in a line with
``[redacted]``: every occurrence of every value is found in the line as written
(overlapping ones too), and each run of characters they cover becomes one mark, so a value
that contains another, or two that overlap, leave no piece of either behind, and a
replacement never creates a new match. It works on whole lines, never on fragments of
what the process wrote: a value that a process writes in two pieces (two ``write`` calls,
two pipe reads) is still one line here. A line cut at the length bound is redacted whole
before it is cut, and an end that could be the start of a value (``redact_cut``) is
taken out too.

Values shorter than ``MIN_LENGTH`` characters are not redacted: taking out every ``1``
or ``ab`` of a task's output would garble it, and the pattern of what vanished would show
the value anyway. A value with newlines is redacted line by line (its lines that are
long enough). The task's secrets fill it (the lease's; empty until then).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MARK", "MIN_LENGTH", "Redactor"]

MARK = "[redacted]"
MIN_LENGTH = 4


class Redactor:
    def __init__(self, values: Iterable[str] = ()) -> None:
        pieces = {
            piece.strip("\r")
            for value in values
            for piece in value.split("\n")
            if len(piece.strip("\r")) >= MIN_LENGTH
        }
        self._values = sorted(pieces, key=lambda v: (-len(v), v))
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in self._values)) if self._values else None
        )

    def __repr__(self) -> str:  # never the values
        return f"Redactor({len(self._values)} values)"

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, line: str) -> str:
        """``line`` with every value replaced by ``[redacted]``."""
        if self._pattern is None or self._pattern.search(line) is None:
            return line
        spans: list[tuple[int, int]] = []  # every occurrence of every value, overlaps too
        for value in self._values:
            start = line.find(value)
            while start >= 0:
                spans.append((start, start + len(value)))
                start = line.find(value, start + 1)
        merged: list[list[int]] = []
        for begin, end in sorted(spans):
            if merged and begin < merged[-1][1]:  # overlaps the previous one: one mark
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([begin, end])
        pieces, kept_to = [], 0
        for begin, end in merged:
            pieces += [line[kept_to:begin], MARK]
            kept_to = end
        pieces.append(line[kept_to:])
        return "".join(pieces)

    def redact_cut(self, line: str) -> str:
        """``redact`` for a line whose end was cut: an end that begins a value (what
        follows it was cut off) is replaced too."""
        found = self.redact(line)
        longest = 0  # the longest end of ``found`` that begins a value (2 characters or more)
        for value in self._values:
            for length in range(min(len(value) - 1, len(found)), max(longest, 1), -1):
                if found.endswith(value[:length]):
                    longest = length
                    break
        return found[: len(found) - longest] + MARK if longest else found
