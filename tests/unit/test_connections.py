"""The connection book: per-client and total bounds, IPv6 /64 budgets, trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from safeboard.server.connections import Admission, ConnectionLimits, client_key


def limits(total: int = 10, per_client: int = 2, *exempt: str) -> ConnectionLimits:
    networks = tuple(ipaddress.ip_network(net) for net in exempt)
    return ConnectionLimits(head_timeout=5, total=total, per_client=per_client, exempt=networks)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_client_key(host: str, key: str) -> None:
    assert client_key(host) == key


def test_per_client_bound_and_release() -> None:
    book = Admission(limits(per_client=2))
    first, second = book.admit("192.0.2.1", 0), book.admit("192.0.2.1", 0)
    assert first is not None
    assert second is not None
    assert book.admit("192.0.2.1", 0) is None
    assert book.admit("192.0.2.2", 0) is not None  # another client has its own budget
    first.release()
    first.release()  # twice counts once
    assert book.total == 2
    assert book.admit("192.0.2.1", 0) is not None
    assert book.admit("192.0.2.1", 0) is None


def test_one_ipv6_64_is_one_client() -> None:
    book = Admission(limits(per_client=2))
    assert book.admit("2001:db8::1", 0) is not None
    assert book.admit("2001:db8::2", 0) is not None
    assert book.admit("2001:db8::ffff:3", 0) is None
    assert book.admit("2001:db8:0:1::1", 0) is not None  # the next /64


def test_total_bound_holds_for_everyone() -> None:
    book = Admission(limits(total=3, per_client=3))
    tickets = [book.admit(f"192.0.2.{i}", 0) for i in range(3)]
    assert all(tickets)
    assert book.admit("198.51.100.1", 0) is None


def test_trusted_proxy_counts_only_towards_the_total() -> None:
    book = Admission(limits(4, 1, "10.0.0.0/24"))
    assert all(book.admit("10.0.0.5", 0) for _ in range(4))
    assert book.admit("10.0.0.5", 0) is None  # the total still binds
    assert book.admit("192.0.2.1", 0) is None


def test_total_stays_below_the_open_files_limit() -> None:
    bounded = ConnectionLimits.within(1024, head_timeout=5, total=4096, per_client=256)
    assert bounded.total == 1024 - 128
    assert bounded.per_client == 256
    tiny = ConnectionLimits.within(64, head_timeout=5, total=4096, per_client=256)
    assert tiny.total == 16
    assert tiny.per_client == 16
    large = ConnectionLimits.within(1 << 20, head_timeout=5, total=4096, per_client=256)
    assert large.total == 4096


def test_an_ipv4_proxy_on_a_dual_stack_bind_is_still_a_proxy() -> None:
    book = Admission(limits(4, 1, "10.0.0.0/24"))
    assert all(book.admit("::ffff:10.0.0.5", 0) for _ in range(4))
