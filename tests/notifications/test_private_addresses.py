"""GREENLIGHT_NOTIFY_DENY_PRIVATE also refuses IPv6 addresses that carry a private IPv4 address
inside (NAT64, IPv4-compatible, 6to4, Teredo) and the old site-local range; public ones pass."""

from __future__ import annotations

import socket

import pytest

from server.notifications.channels import DeliveryFailed, public_address


def resolving_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 443, 0, 0))],
    )


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (networks with DNS64/NAT64)
        "64:ff9b:1::a00:5",  # local-use NAT64 (of 10.0.0.5)
        "::7f00:1",  # IPv4-compatible 127.0.0.1 (deprecated; routed by some stacks)
        "fec0::1",  # site-local (deprecated)
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    ],
)
def test_an_address_embedding_a_private_ipv4_is_refused(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolving_to(monkeypatch, address)
    with pytest.raises(DeliveryFailed):
        public_address("hooks.example.com", 443)


@pytest.mark.parametrize("address", ["2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_a_public_ipv6_address_passes(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, address)
    assert public_address("hooks.example.com", 443) == address
