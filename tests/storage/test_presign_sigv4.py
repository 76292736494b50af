"""Presigned URLs are signed with SigV4: SigV2 is refused by most regions and S3-compatibles."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from devstack.s3 import S3Server
from storage.s3 import S3Storage
from tests.storage.conftest import BUCKET


async def test_a_presigned_url_is_sigv4_and_opens_the_object(
    s3_server: S3Server, tmp_path: Path
) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3Storage(BUCKET, endpoint_url=s3_server.endpoint_url, region="us-east-1")
    source = tmp_path / "out.png"
    source.write_bytes(b"sigv4 body")
    await store.put_file("generated/u/j_1.png", source, "image/png")

    url = await store.presigned_url("generated/u/j_1.png", 60)

    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["60"]
    assert "Signature" not in query and "AWSAccessKeyId" not in query  # no SigV2 leftovers
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200 and response.content == b"sigv4 body"
