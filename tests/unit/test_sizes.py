"""How sizes read in the CLI and the dashboard (the dashboard's copy: tests/e2e)."""

from __future__ import annotations

import pytest

from safeboard.sizes import human_size

# Shared with tests/e2e/test_dashboard.py, which checks app.js writes the same.
SIZES = [
    (0, "0 bytes"),
    (999, "999 bytes"),
    (1000, "1.0 KB"),
    (1250, "1.3 KB"),  # half up in integers: a float tie wrote 1.2
    (1_500_000, "1.5 MB"),
    (999_949, "999.9 KB"),
    (999_950, "1.0 MB"),  # not "1000.0 KB"
    (123_456_789, "123.5 MB"),
    (5 * 10**9, "5.0 GB"),
    (2**62, "4611686.0 TB"),
]


@pytest.mark.parametrize(("size", "text"), SIZES)
def test_sizes_read_in_decimal_units(size: int, text: str) -> None:
    assert human_size(size) == text
