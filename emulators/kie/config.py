"""Settings of the KIE.ai emulator, read from `KIE_EMULATOR_*` environment variables.

List values are given as JSON, e.g. `KIE_EMULATOR_CALLBACK_RETRY_DELAYS='[0.1, 0.2]'`.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from emulators.scaffold.settings import ProviderSettings

# KIE signs callbacks only once the account has created a `webhookHmacKey`; the emulator has one
# by default so the dev stack exercises verification. An empty key sends unsigned callbacks.
DEFAULT_WEBHOOK_HMAC_KEY = "autosync-dev-kie-webhook-hmac-key"


class EmulatorConfig(ProviderSettings):
    """How the emulator behaves when no fault switch says otherwise."""

    model_config = SettingsConfigDict(env_prefix="KIE_EMULATOR_", extra="ignore")

    # "" accepts any bearer token (the header itself is still required).
    api_key: str = ""
    webhook_hmac_key: str = DEFAULT_WEBHOOK_HMAC_KEY
    # A task's lifecycle on the emulator's clock: waiting → queuing → generating → success/fail.
    waiting_seconds: float = Field(default=0.3, ge=0)
    queuing_seconds: float = Field(default=0.3, ge=0)
    generating_seconds: float = Field(default=1.0, ge=0)
    video_generating_seconds: float = Field(default=3.0, ge=0)
    # KIE: result URLs "typically expire after 24 hours".
    file_ttl_seconds: float = Field(default=24 * 3600, ge=0)
    # KIE's callback retry policy is UNCONFIRMED; these are the emulator's guess.
    callback_retry_delays: list[float] = Field(default_factory=lambda: [1.0, 5.0, 15.0])
    callback_timeout_seconds: float = Field(default=15, gt=0)

    @field_validator("callback_retry_delays")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("callback_retry_delays must not be negative")
        return value
