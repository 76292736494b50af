"""Helpers of the fal emulator tests: starting it as a real child process and API shortcuts.

The fixtures live in `fal_fixtures.py`, loaded by `pytest_plugins`. Durations are shortened through the emulator's
environment so a whole request takes well under a second; tests wait with deadlines and check
no timings.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.processes import ManagedProcess, free_port
from providers.fal import FalWebhooks
from tests.emulators.support import Delivery, wait_for

ROOT = Path(__file__).resolve().parents[2]
FAL_KEY = "test-fal-key"
FAL_RETRY_DELAYS = [0.2, 0.2, 0.3]  # the emulator under test retries webhooks after these
IMAGE_MODEL = "fal-ai/flux/dev"
VIDEO_MODEL = "fal-ai/kling-video/v2/master/text-to-video"
FAL_ENV = {
    "FAL_EMULATOR_API_KEY": FAL_KEY,
    "FAL_EMULATOR_QUEUE_SECONDS": "0.2",
    "FAL_EMULATOR_RUN_SECONDS": "0.4",
    "FAL_EMULATOR_WEBHOOK_RETRY_DELAYS": json.dumps(FAL_RETRY_DELAYS),
    "FAL_EMULATOR_WEBHOOK_TIMEOUT_SECONDS": "2",
    "FAL_EMULATOR_PUBLIC_URL": "",
}


def start_emulator(
    log_dir: Path, *, tls: tuple[Path, Path] | None = None, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """Start `python -m emulators.fal` on a free port; return the process and its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "emulators.fal", "--host", "127.0.0.1", "--port", str(port)]
    scheme = "http"
    if tls is not None:
        args += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
        scheme = "https"
    process = ManagedProcess(
        "fal-emulator", args, log_dir=log_dir, env={**FAL_ENV, **(env or {})}, cwd=ROOT
    )
    return process, f"{scheme}://127.0.0.1:{port}"


def wait_ready(process: ManagedProcess, url: str, verify: ssl.SSLContext | bool = True) -> None:
    """Wait until the emulator answers its health route (over TLS too, unlike `wait_http`)."""

    def probe() -> bool:
        if not process.alive():
            raise RuntimeError(f"fal emulator exited early:\n{process.log_tail()}")
        try:
            httpx.get(f"{url}/_emulator/health", verify=verify, timeout=1.0)
            return True
        except httpx.HTTPError:
            return False

    wait_for(probe, bool, timeout=30, what=f"the fal emulator at {url}")


def trusting(cert: Path) -> ssl.SSLContext:
    """A TLS context that trusts only `cert`."""
    return ssl.create_default_context(cafile=str(cert))


def verify_delivery(
    fal_url: str,
    delivery: Delivery,
    body: bytes | None = None,
    verify: ssl.SSLContext | bool = True,
    user_id: str | None = None,
) -> str | None:
    """Check a received webhook with FalWebhooks and the emulator's JWKS (raises if forged);
    with `user_id`, as the API does when FAL_USER_ID is set."""

    async def run() -> str | None:
        async with httpx.AsyncClient(verify=verify) as http:
            verifier = FalWebhooks(
                http, jwks_url=f"{fal_url}/.well-known/jwks.json", user_id=user_id
            )
            return await verifier.verify(delivery.headers, delivery.body if body is None else body)

    return asyncio.run(run())


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, its own trust anchor: (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fal-emulator.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --- API shortcuts ------------------------------------------------------------------------------


def submit(
    api: httpx.Client,
    body: dict[str, Any],
    model: str = IMAGE_MODEL,
    webhook: str | None = None,
    faults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Submit and check fal's 200 with the request's URLs."""
    if faults is not None:
        body = {**body, "_emulator": faults}
    params = {"fal_webhook": webhook} if webhook else None
    response = api.post(f"/{model}", json=body, params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def status(api: httpx.Client, submitted: dict[str, Any], logs: bool = False) -> httpx.Response:
    return api.get(submitted["status_url"], params={"logs": "1" if logs else "0"})


def wait_completed(api: httpx.Client, submitted: dict[str, Any]) -> dict[str, Any]:
    """Poll until COMPLETED (HTTP 200); return the status body."""
    response = wait_for(
        lambda: status(api, submitted, logs=True),
        lambda r: r.status_code == 200,
        what=f"{submitted['request_id']} to complete",
    )
    data: dict[str, Any] = response.json()
    return data


def wait_status(api: httpx.Client, submitted: dict[str, Any], wanted: str) -> dict[str, Any]:
    response = wait_for(
        lambda: status(api, submitted),
        lambda r: r.json()["status"] == wanted,
        what=f"{submitted['request_id']} to reach {wanted}",
    )
    data: dict[str, Any] = response.json()
    return data


def timeline(api: httpx.Client, request_id: str) -> dict[str, Any]:
    response = api.get(f"/_emulator/requests/{request_id}/events")
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def webhook_attempts(api: httpx.Client, request_id: str) -> list[dict[str, Any]]:
    return [e for e in timeline(api, request_id)["events"] if e["type"] == "webhook"]
