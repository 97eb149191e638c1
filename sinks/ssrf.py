"""SSRF guard: outbound webhooks reach only public addresses unless configuration allows more.

A shop chooses its callback URL, so without a guard it could make Kopilka call loopback
services, the cloud metadata address (169.254.169.254) or the private network. The guard
checks the address actually connected to: IP-literal URLs before the request, host names inside
the HTTP client's resolver (every address a name resolves to), so a name that resolves to a
private address, or is re-pointed there later (DNS rebinding), is refused too. Redirects are not
followed. `KOPILKA_WEBHOOK_ALLOWED_NETWORKS` lists CIDRs let through anyway (tests allow
127.0.0.0/8 for their loopback receiver).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """The destination is a non-public address that configuration does not allow."""


def parse_networks(spec: str) -> list[Network]:
    parts = [part.strip() for part in spec.split(",")]
    return [ipaddress.ip_network(part, strict=False) for part in parts if part]


class AddressPolicy:
    def __init__(self, allowed: list[Network] | None = None) -> None:
        self.allowed = allowed or []

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be reached, or None when it may."""
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return None
        for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
            if getattr(ip, f"is_{kind}"):
                return f"{ip} is a {kind.replace('_', '-')} address"
        if not ip.is_global:
            return f"{ip} is not a public address"
        return None

    def check_url(self, url: str) -> None:
        """Refuse an IP-literal URL here (the client does not resolve those); names pass."""
        host = urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return
        reason = self.refusal(host)
        if reason:
            raise AddressRefused(reason)


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing a name if any of its addresses is not allowed."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        infos = await self.inner.resolve(host, port, family)
        for info in infos:
            reason = self.policy.refusal(info["host"])
            if reason:
                raise AddressRefused(f"{host} resolves to {reason}")
        return infos

    async def close(self) -> None:
        await self.inner.close()
