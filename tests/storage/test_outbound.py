"""The outbound fetcher replays the SSRF attacks of issue 9 against real servers on loopback.

A provider's output URL is whatever a user's model returns: internal addresses, the metadata
service, redirects into the cluster, endless bodies. Every one must be refused with a reason
and leave nothing in storage; the allowlisted origins (emulators, test servers) still work.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.exceptions import ApplicationError

from activities.media import MediaActivities
from activities.recovery import RecoverySweeper
from core.contracts import (
    ERR_OUTPUT_INVALID,
    JobKind,
    ProviderPhase,
    ProviderSnapshot,
    StoreRequest,
)
from core.outbound import (
    OutboundFetcher,
    OutboundPolicy,
    OutboundRefused,
    OutboundTooLarge,
    _CheckedAddressesBackend,
    non_public_reason,
    normalise_origin,
)
from storage.base import Storage
from storage.copy import copy_output
from tests.storage.http_source import HttpSource, Route

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 1024
CAP = 64 * 1024


@pytest.fixture
def source() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


@pytest.fixture
def other() -> Iterator[HttpSource]:
    """A second loopback server: an internal service nobody allowlisted."""
    with HttpSource() as server:
        yield server


def fetcher_for(*origins: str, **policy: Any) -> OutboundFetcher:
    return OutboundFetcher(
        OutboundPolicy(allowed_origins=frozenset(normalise_origin(o) for o in origins), **policy)
    )


@pytest.fixture
async def fetcher(source: HttpSource) -> AsyncIterator[OutboundFetcher]:
    async with fetcher_for(source.base_url, max_bytes=CAP) as client:
        yield client


async def get(fetcher: OutboundFetcher, url: str, provider: str | None = None) -> bytes:
    async with fetcher.open(url, provider=provider) as fetched:
        return b"".join([chunk async for chunk in fetched.iter_bytes(8192)])


async def refusal(fetcher: OutboundFetcher, url: str, provider: str | None = None) -> str:
    with pytest.raises(OutboundRefused) as raised:
        await get(fetcher, url, provider)
    return str(raised.value)


def redirect(to: str, status: int = 302) -> Route:
    return Route(lambda: [], status=status, length=0, headers={"Location": to})


# --- what is refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1:9/x", "127.0.0.1 is not a public address"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("https://10.1.2.3/x", "10.1.2.3 is not a public address"),
        ("https://192.168.1.1/x", "192.168.1.1 is not a public address"),
        ("https://100.64.0.1/x", "100.64.0.1 is not a public address"),
        ("https://224.0.0.1/x", "224.0.0.1 is not a public address"),
        ("https://0.0.0.0/x", "0.0.0.0 is not a public address"),
        ("https://[::1]/x", "::1 is not a public address"),
        ("https://[fd00::1]/x", "fd00::1 is not a public address"),
        ("https://[::ffff:127.0.0.1]/x", "embeds 127.0.0.1"),
        ("https://[64:ff9b::a9fe:a9fe]/x", "embeds 169.254.169.254"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("http://127.0.0.1:8233/", "127.0.0.1 is not a public address"),
        ("http://example.com/out.png", "http://example.com:80 is plain http"),
        ("ftp://example.com/out.png", "ftp:// URLs are not fetched"),
        ("file:///etc/passwd", "file:// URLs are not fetched"),
        ("https://user:secret@example.com/out.png", "credentials"),
        ("not a url at all", "URLs are not fetched"),
    ],
)
async def test_internal_and_odd_urls_are_refused(
    fetcher: OutboundFetcher, url: str, reason: str
) -> None:
    assert reason in await refusal(fetcher, url)


async def test_a_loopback_server_is_refused_unless_its_exact_origin_is_allowed(
    fetcher: OutboundFetcher, source: HttpSource, other: HttpSource
) -> None:
    other.add("/secret", b"internal")
    # Same host, another port: not the allowlisted origin.
    assert await refusal(fetcher, other.base_url + "/secret") == (
        "127.0.0.1 is not a public address"
    )
    # Same server under another name: origins compare exactly.
    assert "is plain http" in await refusal(fetcher, f"http://localhost:{source.port}/x")
    assert other.requests == []


async def test_a_host_name_that_resolves_to_loopback_is_refused(fetcher: OutboundFetcher) -> None:
    reason = await refusal(fetcher, "https://localhost:9/x")
    assert reason.startswith("localhost (") and reason.endswith("is not a public address")


async def test_one_internal_address_among_public_ones_is_enough_to_refuse() -> None:
    async def dns(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    async with OutboundFetcher(OutboundPolicy(), resolver=dns) as fetcher:
        reason = await refusal(fetcher, "https://cdn.example/x.png")
    assert reason == "cdn.example (10.0.0.5) is not a public address"


async def test_a_redirect_out_of_the_allowed_origin_to_loopback_is_refused(
    fetcher: OutboundFetcher, source: HttpSource, other: HttpSource
) -> None:
    other.add("/admin", b"internal")
    source.add("/out.png", redirect(other.base_url + "/admin"))
    assert await refusal(fetcher, source.base_url + "/out.png") == (
        "127.0.0.1 is not a public address"
    )
    source.add("/named", redirect(f"http://localhost:{other.port}/admin"))
    assert await refusal(fetcher, source.base_url + "/named") == (
        f"http://localhost:{other.port} is plain http (only https is fetched)"
    )
    source.add("/tls.png", redirect(f"https://127.0.0.1:{other.port}/admin"))
    assert "127.0.0.1 is not a public address" in await refusal(
        fetcher, source.base_url + "/tls.png"
    )
    source.add("/meta.png", redirect("https://169.254.169.254/latest/meta-data/", 307))
    assert "169.254.169.254" in await refusal(fetcher, source.base_url + "/meta.png")
    assert other.requests == []


async def test_more_than_three_redirects_are_refused(
    fetcher: OutboundFetcher, source: HttpSource
) -> None:
    for n in range(4):
        source.add(f"/hop{n}", redirect(f"/hop{n + 1}"))
    source.add("/hop4", PNG)
    assert await get(fetcher, source.base_url + "/hop1") == PNG  # three redirects
    assert await refusal(fetcher, source.base_url + "/hop0") == "more than 3 redirects"
    assert "/hop4" in source.requests  # only reached through the allowed chain


async def test_a_body_past_the_cap_without_content_length_is_cut_off(
    fetcher: OutboundFetcher, source: HttpSource
) -> None:
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:  # a server that never stops: only the cap ends it
            sent.append(8192)
            yield b"\x00" * 8192

    url = source.add("/endless", Route(endless))
    with pytest.raises(OutboundTooLarge, match=rf"larger than MAX_OUTPUT_BYTES \({CAP} bytes\)"):
        await get(fetcher, url)
    assert sum(sent) < 4 * 1024 * 1024  # stopped early, not after reading everything


async def test_a_content_length_past_the_cap_is_refused_before_the_body(
    fetcher: OutboundFetcher, source: HttpSource
) -> None:
    url = source.add("/big", Route(lambda: [b"\x00" * 1024], length=CAP + 1))
    async with fetcher.open(source.add("/small", PNG)):
        pass  # a small one passes
    with pytest.raises(OutboundTooLarge):
        async with fetcher.open(url):
            pytest.fail("the body of an oversized answer must not be offered")


async def test_a_provider_host_list_limits_where_its_outputs_come_from(
    source: HttpSource,
) -> None:
    url = source.add("/out.png", PNG)
    hosts = {"replicate": ["replicate.delivery", "*.replicate.delivery"]}
    async with fetcher_for(source.base_url, provider_hosts=hosts) as fetcher:
        assert "127.0.0.1 is not an output host of replicate" in await refusal(
            fetcher, url, "replicate"
        )
        assert await get(fetcher, url, "fal") == PNG  # no list for fal: any allowed host


async def test_the_transport_refuses_connections_the_fetcher_did_not_check(
    source: HttpSource,
) -> None:
    with pytest.raises(OutboundRefused, match="was not checked"):
        await _CheckedAddressesBackend().connect_tcp("127.0.0.1", source.port)


# --- what is allowed --------------------------------------------------------------------------


async def test_an_allowed_origin_and_a_redirect_inside_it_are_fetched(
    fetcher: OutboundFetcher, source: HttpSource
) -> None:
    url = source.add("/out.png", PNG)
    source.add("/moved", redirect("/out.png", 301))
    assert await get(fetcher, url) == PNG
    assert await get(fetcher, source.base_url + "/moved") == PNG


async def test_the_connection_goes_to_the_address_that_was_checked(source: HttpSource) -> None:
    """`files.test` exists only in our resolver: the connect uses its answer, once per hop."""
    lookups: list[str] = []

    async def dns(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    source.add("/out.png", PNG)
    source.add("/moved", redirect("/out.png"))
    origin = f"http://files.test:{source.port}"
    async with OutboundFetcher(
        OutboundPolicy(allowed_origins=frozenset({normalise_origin(origin)})), resolver=dns
    ) as fetcher:
        assert await get(fetcher, origin + "/moved") == PNG
    assert lookups == ["files.test", "files.test"]
    assert source.hosts == [f"files.test:{source.port}"] * 2  # the Host header keeps the name


def test_origins_are_normalised_and_checked() -> None:
    assert normalise_origin("HTTP://127.0.0.1:8100/") == "http://127.0.0.1:8100"
    assert normalise_origin("https://Files.Test") == "https://files.test:443"
    assert normalise_origin("http://[::1]:80") == "http://[::1]:80"
    for bad in ("ftp://x", "http://u:p@x", "http://x/path", "127.0.0.1:8100"):
        with pytest.raises(ValueError):
            normalise_origin(bad)


@pytest.mark.parametrize(
    ("address", "public"),
    [("8.8.8.8", True), ("2606:4700::1111", True), ("::ffff:8.8.8.8", True),
     ("169.254.169.254", False), ("198.18.0.1", False), ("ff02::1", False),
     ("fe80::1%eth0", False), ("2002:7f00:1::", False)],
)  # fmt: skip
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert (non_public_reason(address) is None) is public


# --- TLS: the certificate is checked against the URL's host, not the address -----------------


def tls_pair(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for `name`, and a client trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _server_context(cert_pem, key_pem), ssl.create_default_context(cadata=cert_pem.decode())


def _server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.pem").write_bytes(cert_pem + key_pem)
        server.load_cert_chain(Path(tmp) / "c.pem")
    return server


async def loopback_dns(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_https_to_a_checked_address_verifies_the_host_name() -> None:
    server_tls, client_tls = tls_pair("files.test")
    with HttpSource(tls=server_tls) as tls_source:
        tls_source.add("/out.png", PNG)
        origin = f"https://files.test:{tls_source.port}"
        policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(origin)}))
        async with OutboundFetcher(policy, verify=client_tls, resolver=loopback_dns) as fetcher:
            assert await get(fetcher, origin + "/out.png") == PNG


async def test_https_with_a_certificate_for_another_name_fails() -> None:
    server_tls, client_tls = tls_pair("other.test")
    with HttpSource(tls=server_tls) as tls_source:
        origin = f"https://files.test:{tls_source.port}"
        policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(origin)}))
        async with OutboundFetcher(policy, verify=client_tls, resolver=loopback_dns) as fetcher:
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
                await get(fetcher, origin + "/out.png")


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


# --- the copy and the activity: refused means nothing stored ---------------------------------


async def test_an_oversized_output_without_content_length_stores_nothing(
    storage: Storage, fetcher: OutboundFetcher, source: HttpSource, tmp_path: Path
) -> None:
    body = PNG + b"\x00" * (2 * CAP)
    url = source.add(
        "/big.png", Route(lambda: [body[i : i + 4096] for i in range(0, len(body), 4096)])
    )
    stored: list[str] = []
    with pytest.raises(OutboundTooLarge):
        await copy_output(
            fetcher, storage, url, tmp_path, context="generated", user_id="alice",
            job_id="job1", index=0, thumbnail_max_edge=64, stored=stored,
        )  # fmt: skip
    assert stored == []
    assert not await storage.exists("generated/alice/job1_0.png")


def store_request(url: str) -> StoreRequest:
    snapshot = ProviderSnapshot(
        provider_job_id="p1",
        provider_status="succeeded",
        phase=ProviderPhase.SUCCEEDED,
        output_urls=[url],
    )
    return StoreRequest(
        job_id="job1", user_id="alice", kind=JobKind.GENERATION, snapshot=snapshot,
        provider="replicate",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8233/api/v1/namespaces",
         "output 0 refused: 127.0.0.1 is not a public address"),
        ("https://169.254.169.254/latest/meta-data/",
         "output 0 refused: 169.254.169.254 is not a public address"),
    ],
)  # fmt: skip
async def test_the_activity_fails_a_refused_output_for_good(
    storage: Storage, fetcher: OutboundFetcher, tmp_path: Path, url: str, reason: str
) -> None:
    activities = MediaActivities(
        sessions=cast(Any, None), storage=storage, providers={}, fetcher=fetcher
    )
    stored: list[str] = []
    with pytest.raises(ApplicationError) as raised:
        await activities._copy_one(url, tmp_path, store_request(url), 0, stored)
    assert raised.value.message == reason
    assert raised.value.type == ERR_OUTPUT_INVALID and raised.value.non_retryable
    assert stored == []


async def test_the_activity_names_the_cap_of_an_oversized_output(
    storage: Storage, fetcher: OutboundFetcher, source: HttpSource, tmp_path: Path
) -> None:
    url = source.add("/big.png", Route(lambda: [b"\x00" * 1024], length=CAP + 1))
    activities = MediaActivities(
        sessions=cast(Any, None), storage=storage, providers={}, fetcher=fetcher
    )
    with pytest.raises(ApplicationError) as raised:
        await activities._copy_one(url, tmp_path, store_request(url), 0, [])
    assert raised.value.message == f"output 0 is larger than MAX_OUTPUT_BYTES ({CAP} bytes)"
    assert raised.value.non_retryable
    assert not await storage.exists("generated/alice/job1_0.png")


async def test_the_recovery_probe_goes_through_the_same_checks(
    fetcher: OutboundFetcher, source: HttpSource, other: HttpSource
) -> None:
    other.add("/secret", b"internal")
    sweeper = RecoverySweeper(
        sessions=cast(Any, None), storage=cast(Any, None), providers={},
        temporal=cast(Any, None), fetcher=fetcher, settings=cast(Any, None),
    )  # fmt: skip
    refused: list[str] = []
    assert await sweeper._alive(source.add("/out.png", PNG), "replicate", refused)
    assert not await sweeper._alive(other.base_url + "/secret", "replicate", refused)
    assert refused == ["127.0.0.1 is not a public address"]
    assert other.requests == []
