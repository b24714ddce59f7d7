"""Origin checks and safe redirects (S7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeboard.auth.csrf import check_session_csrf, safe_next, same_origin
from safeboard.errors import Forbidden

OWN = "https://board.example:8443"


@pytest.mark.parametrize(
    "evil",
    [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "http:evil.example",
        "%2F%2Fevil.example",
        "%252F%252Fevil.example",
        "/%5Cevil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        " //evil.example",
        "/\t/evil.example",
        "evil.example",
        "%2F%5Cevil.example",
        "/%09/evil.example",
    ],
)
def test_unsafe_next_goes_home(evil: str) -> None:
    assert safe_next(evil) == "/"


@pytest.mark.parametrize("path", ["/", "/runs", "/runs/42?tab=charts#x", "/p/a%20b"])
def test_safe_next_keeps_local_paths(path: str) -> None:
    result = safe_next(path)
    assert result.startswith("/")
    assert not result.startswith("//")


def test_safe_next_keeps_the_path_as_sent() -> None:
    """Decoding is for the check only: %26, %23, %2B and %25 keep meaning what they meant."""
    path = "/projects/p?filter=name+~+%22a%26b%22&col=params.a%23b&x=%2B%2525"
    assert safe_next(path) == path


@given(st.text(max_size=60))
def test_safe_next_never_leaves_the_origin(value: str) -> None:
    result = safe_next(value)
    assert result.startswith("/")
    assert not result.startswith(("//", "/\\"))
    assert "\\" not in result


@pytest.mark.parametrize(
    ("origin", "same"),
    [
        ("https://board.example:8443", True),
        ("https://BOARD.example:8443", True),
        ("https://board.example", False),
        ("http://board.example:8443", False),
        ("https://board.example.evil:8443", False),
        ("null", False),
        ("", False),
        ("https://board.example:8443@evil.example", False),
    ],
)
def test_same_origin(origin: str, same: bool) -> None:
    assert same_origin(origin, OWN) is same


def test_csrf_token_compared_exactly() -> None:
    with pytest.raises(Forbidden):
        check_session_csrf(
            token="a" * 63, expected="a" * 64, origin=OWN, referer=None, own_origin=OWN
        )
    check_session_csrf(token="a" * 64, expected="a" * 64, origin=OWN, referer=None, own_origin=OWN)
