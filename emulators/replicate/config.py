"""Settings of the Replicate emulator, read from `REPLICATE_EMULATOR_*` environment variables.

List values (`webhook_retry_delays`) are given as JSON, e.g.
`REPLICATE_EMULATOR_WEBHOOK_RETRY_DELAYS='[0.1, 0.2]'`.
"""

from __future__ import annotations

import base64

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from emulators.scaffold.settings import ProviderSettings

# Standard base64 on purpose: replicate-python splits the secret on "_" and rejects it unless
# exactly two parts come out, so a urlsafe alphabet would break its validator.
DEFAULT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"autosync-dev-webhook-secret-32by").decode()


class EmulatorConfig(ProviderSettings):
    """How the emulator behaves when no fault switch says otherwise."""

    model_config = SettingsConfigDict(env_prefix="REPLICATE_EMULATOR_", extra="ignore")

    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    api_token: str = ""
    starting_seconds: float = Field(default=0.5, ge=0)
    processing_seconds: float = Field(default=1.0, ge=0)
    training_processing_seconds: float = Field(default=3.0, ge=0)
    file_ttl_seconds: float = Field(default=3600, ge=0)
    # Terminal-webhook retry schedule; with the default the last try lands about a minute after
    # completion, as Replicate documents.
    webhook_retry_delays: list[float] = Field(default_factory=lambda: [0.5, 1, 2, 4, 8, 16, 30])
    webhook_timeout_seconds: float = Field(default=5, gt=0)
    # JSON file the jobs are saved to and restored from on startup ("" keeps them in memory).
    state_file: str = ""

    @field_validator("webhook_secret")
    @classmethod
    def _secret_is_standard_base64(cls, value: str) -> str:
        if not value.startswith("whsec_"):
            raise ValueError("webhook_secret must start with 'whsec_'")
        encoded = value.removeprefix("whsec_")
        if "_" in encoded or "-" in encoded:
            raise ValueError("webhook_secret must use standard base64 (no '_' or '-')")
        base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        return value

    def webhook_key(self) -> bytes:
        """The HMAC key: the base64 part of the secret, decoded."""
        encoded = self.webhook_secret.removeprefix("whsec_")
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
