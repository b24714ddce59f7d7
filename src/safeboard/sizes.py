"""How a number of bytes reads, the same in the CLI and the dashboard: ``1.5 MB``.

Decimal units (1 KB = 1000 bytes), one decimal from KB up, rounded half up in integer
arithmetic (no float ties: 1250 bytes is ``1.3 KB`` in both places), and the next unit
once a value would read 1000.0. The dashboard's copy of this function is ``humanSize`` in
``web/static/app.js``; tests/e2e/test_dashboard.py checks that both write the same text.
"""

from __future__ import annotations

__all__ = ["human_size"]


def human_size(size: int) -> str:
    """``999 bytes``, ``1.0 KB``, ``1.5 MB``, ..., ``1200.0 TB``."""
    if size < 1000:
        return f"{size} bytes"
    divisor = 1000
    for unit in ("KB", "MB", "GB", "TB"):
        tenths = (size * 10 + divisor // 2) // divisor
        if tenths < 10000 or unit == "TB":
            return f"{tenths // 10}.{tenths % 10} {unit}"
        divisor *= 1000
    raise AssertionError("unreachable")  # pragma: no cover
