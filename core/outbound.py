"""The one way the system fetches a URL someone else gave us: provider outputs, recovery probes.

A provider's output is whatever a user's model says it is, so the URL is hostile until checked.
On the first URL and again on every redirect (followed here, at most OUTBOUND_MAX_REDIRECTS):

- http(s) only, and no `user:password@` part;
- https, unless the URL's exact origin (`scheme://host:port`, default port filled in) is in
  OUTBOUND_ALLOWED_ORIGINS: those (emulators, test servers) may be plain http and private;
- the host is resolved once, off the event loop, and every address must be public: loopback,
  private, link-local (169.254.169.254, the cloud metadata service), shared (CGNAT), multicast,
  reserved and unspecified addresses are refused, and so are IPv6 forms that embed one of
  them (IPv4-mapped, NAT64, 6to4). The connection then goes to exactly the addresses checked:
  the transport below refuses any connection the fetcher did not check, so a DNS answer that
  changes between the check and the connect (rebinding) reaches nothing. TLS still verifies
  the certificate against the URL's host name (the URL is never rewritten to the address);
- when PROVIDER_OUTPUT_HOSTS lists hosts for the provider, only those;
- a connect deadline and a deadline per read; at most MAX_OUTPUT_BYTES per object: a larger
  Content-Length is refused before the body is read, and a body without one (or with a lying
  one) is cut off as soon as it passes the cap.

A policy with `allowed_networks` (pull-sync clients, PULL_SYNC_ALLOWED_NETWORKS) swaps the
public-address rule for "every address inside one of these networks", plain http included:
clients live on private networks. The other rules (no credentials, re-checked redirects, caps)
stay. Only GETs follow redirects; a POST's redirect is answered as it is.

Refusals raise OutboundRefused (OutboundTooLarge for the cap) with a reason fit for the job's
error; network failures stay httpx errors, worth retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib.util
import ipaddress
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httptools
import httpx

from core.settings import Settings

# httpcore 1.0.9 imports the optional `sniffio` on every lock it sets up, i.e. several times a
# request; anyio >= 4.11 no longer installs it, and Python doesn't remember a failed import, so
# each one searched sys.path again (~0.5 ms of CPU a request). Record the absence once: a later
# `import sniffio` fails at once, as it would anyway (encode/httpcore#1103, not released yet).
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# IPv6 prefixes whose last 32 bits are an IPv4 address the packet ends up at.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# host, port -> addresses; a resolver is swappable so tests can play DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class OutboundRefused(Exception):
    """The URL may not be fetched. Policy, not a network failure: never worth retrying."""


class OutboundTooLarge(OutboundRefused):
    """The object is larger than the byte cap."""


# --- the policy ------------------------------------------------------------------------------


def origin_of(url: httpx.URL) -> str:
    """`scheme://host:port` of an http(s) URL, lower case, the default port filled in."""
    host = url.raw_host.decode("ascii").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{url.scheme}://{host}:{url.port or DEFAULT_PORTS[url.scheme]}"


def normalise_origin(origin: str) -> str:
    """An OUTBOUND_ALLOWED_ORIGINS entry as `origin_of` writes it; ValueError when it isn't one."""
    try:
        url = httpx.URL(origin.strip())
    except httpx.InvalidURL as exc:
        raise ValueError(f"{origin!r} is not an origin: {exc}") from exc
    if (
        url.scheme not in DEFAULT_PORTS
        or not url.raw_host
        or url.userinfo
        or url.raw_path not in (b"", b"/")
    ):
        raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], http or https)")
    return origin_of(url)


def non_public_reason(address: str) -> str | None:
    """Why `address` is not a public address (None: it is)."""
    ip = _ip(address.split("%", 1)[0])  # drop an IPv6 scope id
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = non_public_reason(str(embedded))
            return f"embeds {embedded}, which {inner}" if inner else None
    # is_global alone lets multicast through, hence the explicit checks.
    if (
        not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_unspecified
    ):
        return "is not a public address"
    return None


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """`ipaddress.ip_address`, remembered: the same few addresses are checked on every request
    (pull-sync's clients, twice per pull), and parsing is most of a check's cost."""
    return ipaddress.ip_address(text)


def _is_address(host: str) -> bool:
    try:
        _ip(host)
    except ValueError:
        return False
    return True


def _host_matches(host: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


@dataclass(frozen=True)
class OutboundPolicy:
    allowed_origins: frozenset[str] = frozenset()
    max_redirects: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_bytes: int = 2 * 1024**3
    # provider -> host names or `*.suffix` patterns its URLs must be on (unlisted: any)
    provider_hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # When set, addresses must lie in these networks instead of being public (http allowed).
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(
            allowed_origins=frozenset(
                normalise_origin(o) for o in settings.outbound_allowed_origins
            ),
            max_redirects=settings.outbound_max_redirects,
            connect_timeout=settings.outbound_connect_timeout_seconds,
            read_timeout=settings.outbound_read_timeout_seconds,
            max_bytes=settings.max_output_bytes,
            provider_hosts=settings.provider_output_hosts,
        )

    def too_large(self) -> OutboundTooLarge:
        return OutboundTooLarge(f"larger than MAX_OUTPUT_BYTES ({self.max_bytes} bytes)")

    def outside_networks(self, address: str) -> str | None:
        """Why `address` is outside `allowed_networks` (None: inside one of them)."""
        assert self.allowed_networks is not None
        ip = _ip(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return None
        return "is outside the allowed networks"


def parse_networks(
    values: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Networks from `10.0.0.0/8`-style entries (a bare address is its own /32 or /128)."""
    return tuple(
        ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip()
    )


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    endpoint: tuple[str, int]
    addresses: tuple[str, ...]


# --- connecting only to checked addresses -----------------------------------------------------

# The addresses the fetcher checked for the request being sent, by (host, port). Set around
# each send; the connection is opened inside it, in the same task.
_checked: contextvars.ContextVar[Mapping[tuple[str, int], tuple[str, ...]] | None] = (
    contextvars.ContextVar("outbound_checked", default=None)
)


class _TcpOnlyBackend(httpcore.AsyncNetworkBackend):
    """What every outbound backend refuses: a URL never reaches a local unix socket."""

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore calls it so
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("unix sockets are not fetched")


class _CheckedAddressesBackend(_TcpOnlyBackend):
    """Connects to the addresses the fetcher checked for (host, port), never looks a host up."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore calls it so
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = (_checked.get() or {}).get((host.lower(), port))
        if not addresses:
            raise OutboundRefused(f"connection to {host}:{port} was not checked")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """A connection on asyncio's own streams, for `OutboundSession`: httpcore's AnyIO stream
    opens a cancel scope for every read and write and races connects through a task group,
    which costs more CPU than the HTTP itself on small answers. Errors are httpcore's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout("timed out reading the answer") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if not self._writer.transport.get_write_buffer_size():
                return  # all of it went to the socket at once (a request usually does)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout("timed out sending the request") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore calls it so
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from exc
        except (ssl.SSLError, OSError) as exc:
            self._writer.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self  # the same streams, now over TLS

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # while idle: the server hung up (an expired keep-alive)
            return self._reader.at_eof() or self._writer.is_closing()
        names = {"ssl_object": "ssl_object", "client_addr": "sockname",
                 "server_addr": "peername", "socket": "socket"}  # fmt: skip
        return self._writer.get_extra_info(names[info]) if info in names else None


class _AsyncioBackend(_TcpOnlyBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore calls it so
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        for option in socket_options or ():
            writer.get_extra_info("socket").setsockopt(*option)
        return _AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# The backend of `OutboundSession`'s connections (it keeps no state of its own).
_SESSION_BACKEND = _CheckedAddressesBackend(_AsyncioBackend())


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose network backend is the one above."""

    def __init__(self, verify: ssl.SSLContext | bool, limits: httpx.Limits) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedAddressesBackend(),
        )


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# --- the fetcher ------------------------------------------------------------------------------


@dataclass
class Fetched:
    """The final answer (after redirects), its body read through the byte cap."""

    response: httpx.Response
    url: str
    policy: OutboundPolicy

    async def iter_bytes(self, chunk_size: int) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self.response.aiter_bytes(chunk_size):
            total += len(chunk)
            if total > self.policy.max_bytes:
                raise self.policy.too_large()
            yield chunk


class OutboundFetcher:
    """GET a URL under the policy above; one per process, it pools its connections."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.policy = policy
        self._resolve = resolver
        self._verify = verify
        self._session_tls: ssl.SSLContext | None = None  # made when a session first needs it
        self._max_connections = max_connections
        # Made at the first fetch: its TLS contexts cost ~80 ms of CPU, and a fetcher made to
        # check a URL (registering a pull client) never fetches.
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            policy = self.policy
            limits = httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=20
            )
            self._http = httpx.AsyncClient(
                transport=_CheckedTransport(self._verify, limits),
                timeout=httpx.Timeout(
                    policy.read_timeout, connect=policy.connect_timeout,
                    pool=policy.connect_timeout,
                ),
                follow_redirects=False,
                trust_env=False,  # a proxy would resolve the host itself, past our check
            )  # fmt: skip
        return self._http

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundFetcher:
        return cls(OutboundPolicy.from_settings(settings))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> OutboundFetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @asynccontextmanager
    async def open(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        provider: str | None = None,
        method: str = "GET",
        content: bytes | None = None,
    ) -> AsyncIterator[Fetched]:
        """GET `url`, following redirects under the policy; yields the final answer unread.

        Another `method` (with `content`) is sent once, its redirects not followed.
        A 2xx answer whose Content-Length passes the cap is refused before its body is read.
        """
        sent = {"Accept-Encoding": "identity", **(headers or {})}
        response, final = await self._follow(url, sent, provider, method, content)
        try:
            if 200 <= response.status_code < 300:
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > self.policy.max_bytes:
                    raise self.policy.too_large()
            yield Fetched(response, str(final), self.policy)
        finally:
            await response.aclose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[OutboundSession]:
        """Requests that each want their whole body at once, on connections of the session's
        own (one per origin, kept between its requests, closed at its end) instead of the
        shared pool: see `OutboundSession`."""
        session = OutboundSession(self)
        try:
            yield session
        finally:
            await session.aclose()

    def _tls(self) -> ssl.SSLContext:
        """The TLS context of sessions' https connections (made once, when first needed)."""
        if self._session_tls is None:
            self._session_tls = httpx.create_ssl_context(verify=self._verify, trust_env=False)
        return self._session_tls

    async def check(self, url: str) -> None:
        """Refuse `url` (OutboundRefused) unless the policy would let it be fetched now."""
        await self._check(self._parse(url), None, None)

    async def _follow(
        self,
        url: str,
        headers: Mapping[str, str],
        provider: str | None,
        method: str = "GET",
        content: bytes | None = None,
    ) -> tuple[httpx.Response, httpx.URL]:
        current = self._parse(url)
        previous: httpx.URL | None = None
        for _ in range(self.policy.max_redirects + 1):
            target = await self._check(current, previous, provider)
            token = _checked.set({target.endpoint: target.addresses})
            try:
                request = self._client.build_request(
                    method, current, headers=headers, content=content
                )
                response = await self._client.send(request, stream=True)
            finally:
                _checked.reset(token)
            location = response.headers.get("location")
            if method != "GET" or response.status_code not in REDIRECT_CODES or not location:
                return response, current
            await response.aclose()
            previous = current
            try:
                current = current.join(location)
            except httpx.InvalidURL as exc:
                raise OutboundRefused(f"a redirect to an invalid URL ({exc})") from exc
        raise OutboundRefused(f"more than {self.policy.max_redirects} redirects")

    @staticmethod
    def _parse(url: str) -> httpx.URL:
        try:
            return _parsed(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise OutboundRefused(f"not a valid URL ({exc})") from exc

    async def _check(
        self, url: httpx.URL, previous: httpx.URL | None, provider: str | None
    ) -> _Target:
        """Refuse `url` or return the addresses it may be fetched from."""
        if url.scheme not in DEFAULT_PORTS:
            raise OutboundRefused(f"{url.scheme or 'scheme-less'}:// URLs are not fetched")
        if url.userinfo:
            raise OutboundRefused("URLs with credentials (user@host) are not fetched")
        if not url.raw_host:
            raise OutboundRefused("a URL without a host")
        if self.policy.allowed_networks is not None:
            return await self._check_networks(url)
        origin = origin_of(url)
        allowed = origin in self.policy.allowed_origins
        host = url.raw_host.decode("ascii").lower()
        # An internal address is the most telling reason, so it goes first when no lookup
        # is needed to see it.
        if not allowed and _is_address(host) and (reason := non_public_reason(host)):
            raise OutboundRefused(f"{host} {reason}")
        if url.scheme != "https" and not allowed:
            if previous is not None and previous.scheme == "https":
                raise OutboundRefused(f"a redirect from https down to {origin}")
            raise OutboundRefused(f"{origin} is plain http (only https is fetched)")
        if provider is not None and provider in self.policy.provider_hosts:
            if not _host_matches(host.rstrip("."), self.policy.provider_hosts[provider]):
                raise OutboundRefused(f"{host} is not an output host of {provider}")
        port = url.port or DEFAULT_PORTS[url.scheme]
        addresses = await self._addresses(host, port)
        if not allowed:
            for address in addresses:
                if (reason := non_public_reason(address)) is not None:
                    named = address if address == host else f"{host} ({address})"
                    raise OutboundRefused(f"{named} {reason}")
        return _Target(url=url, endpoint=(host, port), addresses=addresses)

    async def _check_networks(self, url: httpx.URL) -> _Target:
        """Every address of the host inside `allowed_networks` (checked before a lookup when
        the host is an address); plain http is fine there."""
        host = url.raw_host.decode("ascii").lower()
        if _is_address(host) and (reason := self.policy.outside_networks(host)):
            raise OutboundRefused(f"{host} {reason}")
        port = url.port or DEFAULT_PORTS[url.scheme]
        addresses = await self._addresses(host, port)
        for address in addresses:
            if (reason := self.policy.outside_networks(address)) is not None:
                named = address if address == host else f"{host} ({address})"
                raise OutboundRefused(f"{named} {reason}")
        return _Target(url=url, endpoint=(host, port), addresses=addresses)

    async def _addresses(self, host: str, port: int) -> tuple[str, ...]:
        if _is_address(host):
            return (host,)
        try:
            found = await asyncio.wait_for(self._resolve(host, port), self.policy.connect_timeout)
        except (OSError, TimeoutError) as exc:
            # Worth retrying (DNS has bad minutes): a network error, not a refusal.
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not found:
            raise httpx.ConnectError(f"cannot resolve {host}: no address")
        return tuple(dict.fromkeys(found))


@functools.lru_cache(maxsize=16_384)
def _parsed(url: str) -> httpx.URL:
    """httpx's URL parsing costs ~0.2 ms of pure Python; pull-sync asks the same 2,000 URLs
    every cycle (httpx.URL is immutable, so one parse serves every request)."""
    return httpx.URL(url)


class OutboundSession:
    """A few requests in a row to one place, each answered with its status and whole body,
    under the fetcher's policy: the same checks (first URL and every redirect of a GET),
    connections only to the checked addresses, the byte cap, the connect and read deadlines.

    It speaks HTTP/1.1 itself, on asyncio's streams and the C parser uvicorn already brings
    (httptools), on connections of its own: httpx's and httpcore's layers (the shared pool's
    bookkeeping, h11's pure-Python parsing, AnyIO's locks and cancel scopes) cost about three
    times the CPU of the request itself when hundreds run at once (bench/pull_sync.py).
    Pull-sync opens one per client pull: the acknowledge reuses the sync-data's connection.
    """

    def __init__(self, fetcher: OutboundFetcher) -> None:
        self._fetcher = fetcher
        # by (scheme, host, port): an idle connection kept for the session's next request
        self._connections: dict[tuple[str, str, int], _Http11] = {}

    async def read(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        content: bytes | None = None,
    ) -> tuple[int, bytes]:
        """The status and the whole body of `url`, as `OutboundFetcher.open` would fetch it
        (a GET follows redirects under the policy; another method is sent once)."""
        fetcher, policy = self._fetcher, self._fetcher.policy
        given = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        given += "Accept-Encoding: identity\r\n"
        if content is not None:
            given += f"Content-Length: {len(content)}\r\n"
        current = fetcher._parse(url)
        previous: httpx.URL | None = None
        try:
            for _ in range(policy.max_redirects + 1):
                target = await fetcher._check(current, previous, None)
                head = (
                    f"{method} {current.raw_path.decode('ascii')} HTTP/1.1\r\n"
                    f"Host: {current.netloc.decode('ascii')}\r\n{given}\r\n"
                ).encode("latin-1")
                connection = await self._connection(current, target)
                try:
                    answer = await connection.exchange(head + (content or b""), policy)
                finally:
                    if connection.reusable:
                        self._connections[connection.key] = connection
                    else:
                        await connection.aclose()
                location = answer.headers.get(b"location", b"").decode("latin-1")
                if method == "GET" and answer.status in REDIRECT_CODES and location:
                    previous = current
                    try:
                        current = current.join(location)
                    except httpx.InvalidURL as exc:
                        raise OutboundRefused(f"a redirect to an invalid URL ({exc})") from exc
                    continue
                return answer.status, answer.body
        # The stream's errors are httpcore's; callers know httpx's (same names).
        except httpcore.TimeoutException as exc:
            raise getattr(httpx, type(exc).__name__, httpx.TimeoutException)(str(exc)) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise getattr(httpx, type(exc).__name__, httpx.TransportError)(str(exc)) from exc
        raise OutboundRefused(f"more than {policy.max_redirects} redirects")

    async def _connection(self, url: httpx.URL, target: _Target) -> _Http11:
        """The session's idle connection to the URL's origin if the server kept it open, or a
        new one to the addresses just checked."""
        host, port = target.endpoint
        key = (url.scheme, host, port)
        kept = self._connections.pop(key, None)
        if kept is not None and kept.alive():
            return kept
        if kept is not None:
            await kept.aclose()
        policy = self._fetcher.policy
        token = _checked.set({target.endpoint: target.addresses})
        try:
            stream = await _SESSION_BACKEND.connect_tcp(host, port, timeout=policy.connect_timeout)
        finally:
            _checked.reset(token)
        if url.scheme == "https":
            stream = await stream.start_tls(
                self._fetcher._tls(), server_hostname=host, timeout=policy.connect_timeout
            )
        assert isinstance(stream, _AsyncioStream)
        return _Http11(key, stream)

    async def aclose(self) -> None:
        for connection in self._connections.values():
            with contextlib.suppress(Exception):
                await connection.aclose()
        self._connections.clear()


@dataclass
class _Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


# What a server may send before its body: status line and headers (h11's default limit too).
MAX_HEAD_BYTES = 64 * 1024


class _Http11:
    """One HTTP/1.1 connection of a session: a request written whole, its answer parsed by
    httptools as it arrives, under the policy's byte cap; kept for the next request only when
    the answer was complete and the server keeps the connection open."""

    def __init__(self, key: tuple[str, str, int], stream: _AsyncioStream) -> None:
        self.key = key
        self.reusable = False
        self._stream = stream

    def alive(self) -> bool:
        """Idle and still open (a server that hung up makes its end readable)."""
        return not self._stream.get_extra_info("is_readable")

    async def exchange(self, request: bytes, policy: OutboundPolicy) -> _Answer:
        self.reusable = False
        await self._stream.write(request, timeout=policy.read_timeout)
        reading = _Reading(policy.max_bytes)
        parser = httptools.HttpResponseParser(reading)
        reading.parser = parser
        seen = 0
        while not reading.complete:
            data = await self._stream.read(65536, timeout=policy.read_timeout)
            if not data:
                if reading.runs_to_close():
                    break  # a body without a length ends where the connection does
                raise httpcore.RemoteProtocolError("the server closed before its answer ended")
            seen += len(data)
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                raise httpcore.RemoteProtocolError("the server switched protocols") from exc
            except httptools.HttpParserError as exc:
                if reading.too_large:
                    raise policy.too_large() from None
                raise httpcore.RemoteProtocolError(f"not an HTTP/1.1 answer ({exc})") from exc
            if not reading.head_done and seen > MAX_HEAD_BYTES:
                raise httpcore.RemoteProtocolError("the answer's headers are too long")
        self.reusable = reading.complete and reading.keep_alive
        return _Answer(parser.get_status_code(), reading.headers, b"".join(reading.chunks))

    async def aclose(self) -> None:
        await self._stream.aclose()


class _StopReading(Exception):
    """Raised from a parser callback to stop the parser (it reports a callback error)."""


class _Reading:
    """httptools' callbacks for one answer: its headers, and its body up to the cap (a larger
    Content-Length is refused before any of the body is read)."""

    def __init__(self, max_bytes: int) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.head_done = False
        self.complete = False
        self.too_large = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None
        self._left = max_bytes

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.head_done = True
        length = self.headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._left:
            self.too_large = True
            raise _StopReading

    def on_body(self, body: bytes) -> None:
        self._left -= len(body)
        if self._left < 0:
            self.too_large = True
            raise _StopReading
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        # Asked here: once the message is over, llhttp has reset and always answers False.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def runs_to_close(self) -> bool:
        """A body with neither a length nor chunks: the connection's end completes it."""
        return (
            self.head_done
            and b"content-length" not in self.headers
            and b"chunked" not in self.headers.get(b"transfer-encoding", b"").lower()
        )
