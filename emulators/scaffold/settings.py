"""Settings every emulator reads from its `<NAME>_EMULATOR_*` environment variables."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request


class EmulatorSettings(BaseSettings):
    """A subclass sets `model_config = SettingsConfigDict(env_prefix="<NAME>_EMULATOR_", …)`."""

    model_config = SettingsConfigDict(extra="ignore")

    log_requests: bool = False


class ProviderSettings(EmulatorSettings):
    """An emulator that hands out URLs of its own (files, job URLs) says where it is reached."""

    public_url: str = ""

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def base_url(self, request: Request) -> str:
        """Where clients reach this emulator: the configured public URL or the request's own."""
        return self.public_url or str(request.base_url).rstrip("/")
