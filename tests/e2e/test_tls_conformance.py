"""A real ``safeboard server`` process graded by sslyze against Mozilla's profiles (S10)."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest

from tests.e2e.conftest import ServerProcess
from tests.support.tlsscan import MOZILLA_GROUPS, check_mozilla, handshake, offered_groups

pytestmark = [pytest.mark.e2e, pytest.mark.tls]

Start = Callable[..., ServerProcess]


def test_all_interfaces_server_is_mozilla_intermediate(server_factory: Start) -> None:
    server = server_factory("--host", "0.0.0.0")
    check_mozilla(server.port, server.ca_path, "intermediate")
    assert offered_groups(server.port, server.ca_path) == MOZILLA_GROUPS
    assert handshake(server.port, ssl.TLSVersion.TLSv1_1) is None
    assert handshake(server.port, ssl.TLSVersion.TLSv1) is None
    assert handshake(server.port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(server.port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_modern_profile_is_mozilla_modern(server_factory: Start) -> None:
    server = server_factory("--tls", "--tls-profile", "modern")
    check_mozilla(server.port, server.ca_path, "modern")
    assert handshake(server.port, ssl.TLSVersion.TLSv1_2) is None
    assert handshake(server.port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
