"""fal's webhook signature: Ed25519 over `request_id\\nuser_id\\ntimestamp\\nsha256hex(body)`.

The public keys are served as a JWKS (`/.well-known/jwks.json`, `kty: OKP`, `crv: Ed25519`,
`x` base64url without padding). A rotation adds a key and, unless asked to keep it, drops
the old one from the JWKS, so receivers that cached the set must fetch it again.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
HEADER_USER_ID = "X-Fal-Webhook-User-Id"
HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
HEADER_SIGNATURE = "X-Fal-Webhook-Signature"


def signed_message(request_id: str, user_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class SigningKey:
    private: Ed25519PrivateKey

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_bytes(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def kid(self) -> str:
        return hashlib.sha256(self.public_bytes).hexdigest()[:16]

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(self.public_bytes),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }

    def sign(self, request_id: str, user_id: str, timestamp: int, body: bytes) -> str:
        """The hex `X-Fal-Webhook-Signature` value."""
        return self.private.sign(signed_message(request_id, user_id, timestamp, body)).hex()


@dataclass
class KeyRing:
    """The signing key, the public keys in the JWKS, and a key no receiver knows."""

    current: SigningKey
    published: list[SigningKey] = field(default_factory=list)
    stranger: SigningKey = field(default_factory=lambda: SigningKey(Ed25519PrivateKey.generate()))

    @classmethod
    def from_seed_hex(cls, seed: str) -> KeyRing:
        key = SigningKey.from_seed(bytes.fromhex(seed))
        return cls(current=key, published=[key])

    def rotate(self, *, keep_old: bool) -> SigningKey:
        new = SigningKey.from_seed(os.urandom(32))
        self.published = [*self.published, new] if keep_old else [new]
        self.current = new
        return new

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.jwk() for key in self.published]}
