"""`OutboundFetcher.session()`, the lean path pull-sync takes (httpcore connections of its own,
whole bodies): the same refusals, redirects, caps and TLS checks as `open`, against real
servers on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from core.outbound import (
    OutboundFetcher,
    OutboundPolicy,
    OutboundRefused,
    OutboundTooLarge,
    normalise_origin,
    parse_networks,
)
from tests.storage.http_source import HttpSource, Route
from tests.storage.test_outbound import (
    CAP,
    PNG,
    fetcher_for,
    loopback_dns,
    redirect,
    tls_pair,
)


@pytest.fixture
def source() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


@pytest.fixture
def other() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


@pytest.fixture
async def fetcher(source: HttpSource) -> AsyncIterator[OutboundFetcher]:
    async with fetcher_for(source.base_url, max_bytes=CAP) as client:
        yield client


async def read(fetcher: OutboundFetcher, url: str) -> tuple[int, bytes]:
    async with fetcher.session() as session:
        return await session.read(url)


async def refusal(fetcher: OutboundFetcher, url: str) -> str:
    with pytest.raises(OutboundRefused) as raised:
        await read(fetcher, url)
    return str(raised.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("https://[::ffff:127.0.0.1]/x", "embeds 127.0.0.1"),
        ("http://example.com/out.png", "http://example.com:80 is plain http"),
        ("file:///etc/passwd", "file:// URLs are not fetched"),
        ("https://user:secret@example.com/out.png", "credentials"),
    ],
)
async def test_internal_and_odd_urls_are_refused(
    fetcher: OutboundFetcher, url: str, reason: str
) -> None:
    assert reason in await refusal(fetcher, url)


async def test_redirects_are_checked_followed_and_limited(
    fetcher: OutboundFetcher, source: HttpSource, other: HttpSource
) -> None:
    other.add("/admin", b"internal")
    source.add("/out.png", PNG)
    source.add("/moved", redirect("/out.png", 301))
    source.add("/away", redirect(other.base_url + "/admin"))
    for n in range(4):
        source.add(f"/hop{n}", redirect(f"/hop{n + 1}"))
    source.add("/hop4", PNG)
    assert await read(fetcher, source.base_url + "/moved") == (200, PNG)
    assert await read(fetcher, source.base_url + "/hop1") == (200, PNG)  # three redirects
    assert await refusal(fetcher, source.base_url + "/hop0") == "more than 3 redirects"
    assert await refusal(fetcher, source.base_url + "/away") == "127.0.0.1 is not a public address"
    assert other.requests == []


async def test_a_status_and_body_come_back_as_they_are(
    fetcher: OutboundFetcher, source: HttpSource
) -> None:
    source.add("/gone", Route(lambda: [b"no such thing"], status=410))
    async with fetcher.session() as session:
        assert await session.read(source.base_url + "/gone") == (410, b"no such thing")
        assert await session.read(source.add("/ok", PNG)) == (200, PNG)  # the same session


async def test_bodies_past_the_cap_are_refused(
    fetcher: OutboundFetcher, source: HttpSource
) -> None:
    ended = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            while True:  # only the client hanging up ends it
                yield b"\x00" * 8192
        finally:
            ended.set()

    with pytest.raises(OutboundTooLarge):
        await read(fetcher, source.add("/endless", Route(endless)))
    # The connection was closed: the server's next write fails and the answer ends.
    assert await asyncio.to_thread(ended.wait, 10)
    with pytest.raises(OutboundTooLarge):
        await read(fetcher, source.add("/big", Route(lambda: [b"\x00"], length=CAP + 1)))


async def test_each_request_goes_to_the_address_checked_for_it(source: HttpSource) -> None:
    lookups: list[str] = []

    async def dns(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    source.add("/out.png", PNG)
    origin = f"http://files.test:{source.port}"
    policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(origin)}))
    async with OutboundFetcher(policy, resolver=dns) as fetcher, fetcher.session() as session:
        assert await session.read(origin + "/out.png") == (200, PNG)
        assert await session.read(origin + "/out.png") == (200, PNG)
    assert lookups == ["files.test", "files.test"]  # checked again for the second request
    assert source.hosts == [f"files.test:{source.port}"] * 2  # the Host header keeps the name


async def test_allowed_networks_replace_the_public_rule(source: HttpSource) -> None:
    """Pull-sync's policy: private addresses inside the listed networks, plain http included."""
    source.add("/api/client/health", b'{"status": "ok"}')
    inside = OutboundPolicy(allowed_networks=parse_networks(["127.0.0.0/8"]))
    async with OutboundFetcher(inside) as fetcher:
        assert await read(fetcher, source.base_url + "/api/client/health") == (
            200,
            b'{"status": "ok"}',
        )
    outside = OutboundPolicy(allowed_networks=parse_networks(["10.0.0.0/8"]))
    async with OutboundFetcher(outside) as fetcher:
        assert "outside the allowed networks" in await refusal(fetcher, source.base_url + "/x")


async def test_a_silent_server_ends_in_a_read_timeout_as_httpx_names_it(
    source: HttpSource,
) -> None:
    def stalled() -> Iterator[bytes]:
        time.sleep(2)
        yield b"late"

    url = source.add("/slow", Route(stalled, length=4))
    policy = OutboundPolicy(
        allowed_origins=frozenset({normalise_origin(source.base_url)}), read_timeout=0.3
    )
    async with OutboundFetcher(policy) as fetcher:
        with pytest.raises(httpx.ReadTimeout):
            await read(fetcher, url)


async def test_https_checks_the_certificate_against_the_url_host() -> None:
    server_tls, client_tls = tls_pair("files.test")
    with HttpSource(tls=server_tls) as tls_source:
        tls_source.add("/out.png", PNG)
        good = f"https://files.test:{tls_source.port}"
        policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(good)}))
        async with OutboundFetcher(policy, verify=client_tls, resolver=loopback_dns) as fetcher:
            assert await read(fetcher, good + "/out.png") == (200, PNG)
    server_tls, client_tls = tls_pair("other.test")
    with HttpSource(tls=server_tls) as tls_source:
        wrong = f"https://files.test:{tls_source.port}"
        policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(wrong)}))
        async with OutboundFetcher(policy, verify=client_tls, resolver=loopback_dns) as fetcher:
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
                await read(fetcher, wrong + "/out.png")


async def test_a_redirect_from_https_down_to_http_is_refused(other: HttpSource) -> None:
    server_tls, client_tls = tls_pair("files.test")
    other.add("/x", PNG)
    with HttpSource(tls=server_tls) as tls_source:
        tls_source.add("/down", redirect(other.base_url.replace("127.0.0.1", "files.test") + "/x"))
        origin = f"https://files.test:{tls_source.port}"
        policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(origin)}))
        async with OutboundFetcher(policy, verify=client_tls, resolver=loopback_dns) as fetcher:
            assert "a redirect from https down to http://files.test" in await refusal(
                fetcher, origin + "/down"
            )
    assert other.requests == []
