"""The sender lowers the interpreter's switch interval while it works, and puts back what
it found when the last one is done (sdk/switching.py, issue 13)."""

from __future__ import annotations

import sys

from safeboard.sdk.switching import SWITCH_SECONDS, responsive


def test_the_interval_is_lowered_inside_and_put_back_after_the_last() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with responsive():
            assert sys.getswitchinterval() <= SWITCH_SECONDS * 1.01
            with responsive():  # two runs' senders at once
                pass
            assert sys.getswitchinterval() <= SWITCH_SECONDS * 1.01
        assert sys.getswitchinterval() == 0.005
        sys.setswitchinterval(0.0001)  # already lower: left as it is
        lower = sys.getswitchinterval()  # in the interpreter's microseconds
        with responsive():
            assert sys.getswitchinterval() == lower
        assert sys.getswitchinterval() == lower
    finally:
        sys.setswitchinterval(before)
