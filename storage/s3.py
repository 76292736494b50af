"""S3 storage through boto3 (AWS or any S3-compatible endpoint via S3_ENDPOINT_URL).

boto3 is synchronous: calls run in threads. `upload_file` streams the file in multipart chunks
of TRANSFER.multipart_chunksize, at most TRANSFER.max_concurrency at a time, so memory stays
the same whatever the size of the file. Objects are private: readers get presigned URLs, or
`public_url/{key}` when the bucket (or a CDN in front of it) is public there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.base import Aborted, run_abortable
from storage.keys import check_key

MB = 1024 * 1024
TRANSFER = TransferConfig(
    multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=4, use_threads=True
)


class S3Storage:
    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str,
        public_url: str | None = None,
    ) -> None:
        self.bucket: str | None = bucket
        self._bucket = bucket
        self._public_url = public_url.rstrip("/") if public_url else None
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}
            ),
        )

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        check_key(key)

        def upload(abort: threading.Event) -> None:
            def progress(_sent: int) -> None:
                # s3transfer calls this as bytes go out; raising aborts the (multipart) upload.
                if abort.is_set():
                    raise Aborted(key)

            self._client.upload_file(
                str(path),
                self._bucket,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=TRANSFER,
                Callback=progress,
            )

        await run_abortable(upload)

    async def exists(self, key: str) -> bool:
        check_key(key)
        try:
            await asyncio.to_thread(self._client.head_object, Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        check_key(key)
        await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=key)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        try:
            response = await asyncio.to_thread(
                self._client.get_object, Bucket=self._bucket, Key=key
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(key) from exc
            raise
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, MB):
                yield chunk
        finally:
            body.close()

    async def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        check_key(key)
        if self._public_url:
            return f"{self._public_url}/{key}"
        url: str = await asyncio.to_thread(
            self._client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=expires_seconds,
        )
        return url
