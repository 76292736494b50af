"""Settings of the fal.ai emulator, read from `FAL_EMULATOR_*` environment variables.

List values (`webhook_retry_delays`) are given as JSON, e.g.
`FAL_EMULATOR_WEBHOOK_RETRY_DELAYS='[0.1, 0.2]'`.
"""

from __future__ import annotations

import hashlib

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from emulators.scaffold.settings import ProviderSettings

# A fixed dev key, so webhook receivers that cached the JWKS keep verifying after a restart.
DEFAULT_SIGNING_SEED = hashlib.sha256(b"autosync-dev-fal-webhook-key").hexdigest()


class EmulatorConfig(ProviderSettings):
    """How the emulator behaves when no fault switch says otherwise."""

    model_config = SettingsConfigDict(env_prefix="FAL_EMULATOR_", extra="ignore")

    # `Authorization: Key <api_key>`; any key is accepted when empty.
    api_key: str = ""
    # Sent as `X-Fal-Webhook-User-Id` and signed with every webhook.
    user_id: str = "autosync-dev-user"
    # 32-byte Ed25519 private key seed, hex; its public key is served at /.well-known/jwks.json.
    signing_key_seed: str = DEFAULT_SIGNING_SEED
    queue_seconds: float = Field(default=0.5, ge=0)
    run_seconds: float = Field(default=1.0, ge=0)
    # How long output files are served after completion (fal's default is undocumented).
    file_ttl_seconds: float = Field(default=3600, ge=0)
    # How long `GET .../requests/{id}` keeps the result (fal: one hour for small results).
    result_ttl_seconds: float = Field(default=3600, ge=0)
    # fal: "it will retry 10 times in the span of 2 hours"; the schedule itself is unpublished.
    webhook_retry_delays: list[float] = Field(
        default_factory=lambda: [10.0, 30, 60, 120, 300, 600, 900, 1200, 1800, 2100]
    )
    webhook_timeout_seconds: float = Field(default=15, gt=0)

    @field_validator("signing_key_seed")
    @classmethod
    def _seed_is_32_hex_bytes(cls, value: str) -> str:
        if len(bytes.fromhex(value)) != 32:
            raise ValueError("signing_key_seed must be 32 bytes as 64 hex characters")
        return value
