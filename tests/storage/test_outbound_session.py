"""`OutboundFetcher.session()`, the lean path pull-sync takes (HTTP/1.1 of its own on asyncio
streams, httptools parsing, whole bodies): the same refusals, redirects, caps and TLS checks as
`open`, against real servers on loopback."""

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


class RawServer:
    """A loopback TCP server that answers every connection with the same bytes, then closes
    (or, `keep_alive`, answers each request on it until the client hangs up): the HTTP
    framings a hostile or old server may send, byte for byte."""

    def __init__(self, answer: bytes, *, keep_alive: bool = False) -> None:
        self.answer = answer
        self.keep_alive = keep_alive
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(self.answer)
                    await writer.drain()
                    if not self.keep_alive:
                        break
            except asyncio.IncompleteReadError:
                pass  # the client hung up
            writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


def loopback_fetcher(base_url: str) -> OutboundFetcher:
    return OutboundFetcher(
        OutboundPolicy(allowed_origins=frozenset({normalise_origin(base_url)}), max_bytes=CAP)
    )


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
         b"abcde"),
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", b"until the end"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)  # fmt: skip
async def test_chunked_and_close_delimited_bodies_are_read_whole(
    answer: bytes, body: bytes
) -> None:
    async with RawServer(answer) as base_url, loopback_fetcher(base_url) as fetcher:
        status, read_body = await read(fetcher, base_url + "/x")
    assert read_body == body
    assert status in (200, 204)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        # The connection ends before the length it announced.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed before"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "closed before"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.1 answer"),
        # Headers without end: refused past the head limit, not buffered forever.
        (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000, "headers are too long"),
    ],
)
async def test_broken_framings_are_transport_errors(answer: bytes, error: str) -> None:
    async with RawServer(answer) as base_url, loopback_fetcher(base_url) as fetcher:
        with pytest.raises(httpx.TransportError, match=error):
            await read(fetcher, base_url + "/x")


async def test_a_chunked_body_past_the_cap_is_refused() -> None:
    chunk = b"%x\r\n%s\r\n" % (CAP // 2, b"\x00" * (CAP // 2))
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n"
    async with RawServer(answer) as base_url, loopback_fetcher(base_url) as fetcher:
        with pytest.raises(OutboundTooLarge):
            await read(fetcher, base_url + "/x")


async def test_the_second_request_reuses_a_kept_connection_and_not_a_closed_one(
    source: HttpSource,
) -> None:
    source.add("/a", PNG)
    async with loopback_fetcher(source.base_url) as fetcher, fetcher.session() as session:
        assert await session.read(source.base_url + "/a") == (200, PNG)
        assert await session.read(source.base_url + "/a") == (200, PNG)
    # A server that keeps the connection: both requests on one (llhttp forgets a message's
    # keep-alive once it is complete; this once cost every pull a second connection).
    keeping = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", keep_alive=True)
    async with keeping as base_url, loopback_fetcher(base_url) as fetcher:
        async with fetcher.session() as session:
            assert await session.read(base_url + "/1") == (200, b"ok")
            assert await session.read(base_url + "/2") == (200, b"ok")
    assert keeping.connections == 1
    # A server that closes after each answer: the session connects again instead of failing.
    closing = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    async with closing as base_url, loopback_fetcher(base_url) as fetcher:
        async with fetcher.session() as session:
            assert await session.read(base_url + "/1") == (200, b"ok")
            assert await session.read(base_url + "/2") == (200, b"ok")
    assert closing.connections == 2
