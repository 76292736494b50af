"""Pick the storage backend from settings."""

from __future__ import annotations

from core.settings import Settings
from storage.base import Storage
from storage.local import LocalStorage


def build_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        # boto3 costs ~25 MB per process: imported only when S3 is the backend.
        from storage.s3 import S3Storage

        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            public_url=settings.s3_public_url or None,
            presign_endpoint_url=settings.s3_presign_endpoint_url or None,
        )
    return LocalStorage(settings.storage_dir)
