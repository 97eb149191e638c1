"""The SSRF guard refuses non-public destinations, by literal address and by resolved name."""

from __future__ import annotations

import pytest

from sinks.ssrf import AddressPolicy, AddressRefused, GuardedResolver, parse_networks

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
    "224.0.0.1",
    "::1",
    "fe80::1",
    "fd00::1",
    "::ffff:127.0.0.1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert AddressPolicy().refusal(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address):
    assert AddressPolicy().refusal(address) is None


def test_configured_networks_are_let_through_and_nothing_else():
    policy = AddressPolicy(parse_networks("127.0.0.0/8, 10.0.0.0/24"))
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("10.0.0.9") is None
    assert policy.refusal("10.0.1.9")
    assert policy.refusal("169.254.169.254")


def test_ip_literal_urls_are_checked_before_any_request():
    policy = AddressPolicy()
    with pytest.raises(AddressRefused, match="link-local"):
        policy.check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(AddressRefused):
        policy.check_url("http://[::1]:8080/hook")
    policy.check_url("https://shop.example.com/hook")  # names are checked when resolved


class FakeResolver:
    def __init__(self, *addresses):
        self.addresses = addresses

    async def resolve(self, host, port=0, family=0):
        return [
            {"hostname": host, "host": a, "port": port, "family": 2, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self):
        pass


async def test_a_name_resolving_to_a_private_address_is_refused():
    resolver = GuardedResolver(AddressPolicy(), FakeResolver("93.184.216.34", "10.0.0.5"))
    with pytest.raises(AddressRefused, match=r"shop\.example resolves to 10\.0\.0\.5"):
        await resolver.resolve("shop.example", 443)


async def test_a_name_resolving_to_public_addresses_passes():
    resolver = GuardedResolver(AddressPolicy(), FakeResolver("93.184.216.34"))
    [info] = await resolver.resolve("shop.example", 443)
    assert info["host"] == "93.184.216.34"
