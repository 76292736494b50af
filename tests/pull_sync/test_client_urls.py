"""The client URL rule: addresses inside PULL_SYNC_ALLOWED_NETWORKS (http is fine there),
re-checked on every redirect; no credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from core.outbound import OutboundFetcher, OutboundPolicy, OutboundRefused, parse_networks
from tests.storage.http_source import HttpSource, Route


@pytest.fixture
def source() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


def policy(*networks: str) -> OutboundPolicy:
    return OutboundPolicy(allowed_networks=parse_networks(networks), read_timeout=5)


@pytest.fixture
async def loopback() -> AsyncIterator[OutboundFetcher]:
    async with OutboundFetcher(policy("127.0.0.0/8", "::1/128")) as fetcher:
        yield fetcher


def redirect(to: str, status: int = 302) -> Route:
    return Route(lambda: [], status=status, length=0, headers={"Location": to})


async def body(fetcher: OutboundFetcher, url: str, method: str = "GET") -> tuple[int, bytes]:
    async with fetcher.open(url, method=method, content=b"{}" if method != "GET" else None) as got:
        return got.response.status_code, b"".join([c async for c in got.iter_bytes(1024)])


async def refusal(fetcher: OutboundFetcher, url: str) -> str:
    with pytest.raises(OutboundRefused) as raised:
        await body(fetcher, url)
    return str(raised.value)


async def test_plain_http_inside_the_networks_is_fetched(
    loopback: OutboundFetcher, source: HttpSource
) -> None:
    url = source.add("/api/client/health", b'{"status": "ok"}')
    assert await body(loopback, url) == (200, b'{"status": "ok"}')


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.1.2.3/x", "10.1.2.3 is outside the allowed networks"),
        ("http://169.254.169.254/latest/meta-data/", "is outside the allowed networks"),
        ("http://93.184.216.34/x", "is outside the allowed networks"),
        ("http://user:pw@127.0.0.1/x", "credentials"),
        ("ftp://127.0.0.1/x", "ftp:// URLs are not fetched"),
    ],
)
async def test_outside_the_networks_or_not_http_is_refused(
    loopback: OutboundFetcher, url: str, reason: str
) -> None:
    assert reason in await refusal(loopback, url)


async def test_public_addresses_are_not_allowed_unless_listed(source: HttpSource) -> None:
    url = source.add("/x", b"ok")
    async with OutboundFetcher(policy("10.0.0.0/8")) as fetcher:
        assert "127.0.0.1 is outside the allowed networks" in await refusal(fetcher, url)
    assert source.requests == []


async def test_redirects_are_checked_and_never_leave_the_networks(
    loopback: OutboundFetcher, source: HttpSource
) -> None:
    source.add("/inside", b"fine")
    source.add("/hop", redirect(source.base_url + "/inside"))
    assert await body(loopback, source.base_url + "/hop") == (200, b"fine")
    source.add("/out", redirect("http://169.254.169.254/latest/meta-data/", 307))
    assert "outside the allowed networks" in await refusal(loopback, source.base_url + "/out")


async def test_check_refuses_without_fetching(loopback: OutboundFetcher) -> None:
    await loopback.check("http://127.0.0.1:1/c/x")
    with pytest.raises(OutboundRefused):
        await loopback.check("http://10.0.0.1/c/x")
