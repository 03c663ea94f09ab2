"""Which CRM endpoint URLs dmledger may post to: never into its own network (SSRF).

An account's key chooses its CRM endpoint, so without a check it could point the
dispatcher at loopback, the private network or a cloud metadata service. A URL is
checked when it is set (its host resolved, each address checked) and again on every
connection (`CheckedNetworkBackend`): the address actually connected to is one that was
checked, so a name that resolves elsewhere later (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore

Resolve = Callable[[str, int], list[str]]
"""A host and port to the IP addresses a connection may use (DNS, or a fake in tests)."""

SETTING = "DMLEDGER_CRM_ALLOW_PRIVATE_URLS"
REFUSED = "refused"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses, from the system's resolver (an IP literal is itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class CrmUrlPolicy:
    """`https://` only in production; loopback and private addresses (and `http://`) only
    when the operator allows them; link-local, metadata, multicast and unspecified
    addresses never."""

    allow_private: bool
    https_only: bool
    resolve: Resolve = system_resolve

    def problem_with_url(self, url: str) -> str | None:
        """What is wrong with `url` as a CRM endpoint now, or None (resolves its host:
        blocking). A name that does not resolve yet is let through: every delivery
        checks its addresses again."""
        problem = self.problem_with_scheme(url)
        if problem is not None:
            return problem
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "the endpoint's port is not a number from 0 to 65535"
        if not host:
            return "the endpoint must name a host"
        try:
            addresses = self.resolve(host, port)
        except (OSError, UnicodeError):
            return None
        return self.problem_with_addresses(host, addresses)

    def problem_with_scheme(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            return "the endpoint must be an http(s) URL"
        if parts.scheme == "http" and self.https_only:
            return "the endpoint must be an https:// URL in production"
        if parts.scheme == "http" and not self.allow_private:
            return f"the endpoint must be an https:// URL (http:// only with {SETTING}=true)"
        return None

    def problem_with_addresses(self, host: str, addresses: list[str]) -> str | None:
        for address in addresses:
            problem = self.problem_with_address(address)
            if problem is not None:
                shown = host if host == address else f"{host} (which resolves to {address})"
                return f"the endpoint's host {shown} is {problem}"
        return None

    def problem_with_address(self, address: str) -> str | None:
        """Why dmledger may not connect to this IP address, or None."""
        try:
            ip = _unwrapped(ipaddress.ip_address(address.split("%")[0]))
        except ValueError:
            return "not an IP address"
        if ip in _METADATA:
            return "a cloud metadata address, never allowed"
        if ip.is_unspecified:
            return "an unspecified address, never allowed"
        if ip.is_link_local:
            return "a link-local address, never allowed"
        if ip.is_multicast:
            return "a multicast address, never allowed"
        if ip.is_global:
            return None
        if self.allow_private:
            return None
        kind = "a loopback address" if ip.is_loopback else "a private address"
        return f"{kind}, allowed only with {SETTING}=true"


def _unwrapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


class RefusedAddress(httpcore.ConnectError):
    """The endpoint's host resolves to an address dmledger may not connect to."""


class CheckedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host itself, checks every address, and connects only to a checked one.

    TLS still verifies the certificate against the URL's host name (httpcore passes it
    as the server name), so connecting by address changes nothing there."""

    def __init__(self, policy: CrmUrlPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(
                asyncio.to_thread(self._policy.resolve, host, port), timeout
            )
        except (OSError, UnicodeError, TimeoutError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        problem = self._policy.problem_with_addresses(host, addresses)
        if problem is not None:
            raise RefusedAddress(f"{REFUSED}: {problem}")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as error:
                failure = error
        raise failure or httpcore.ConnectError(f"cannot connect to {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress(f"{REFUSED}: CRM endpoints are never Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
