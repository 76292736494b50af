"""Pick the storage backend from settings."""

from __future__ import annotations

from core.settings import Settings
from storage.base import Storage
from storage.local import LocalStorage
from storage.s3 import S3Storage


def build_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(
            settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
        )
    return LocalStorage(settings.storage_dir)
