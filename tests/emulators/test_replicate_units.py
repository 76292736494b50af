"""In-process checks of the emulator's pure pieces: file bytes, signatures, parsing."""

from __future__ import annotations

import io
import tarfile
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from emulators.replicate.config import DEFAULT_WEBHOOK_SECRET, EmulatorConfig
from emulators.replicate.models import Faults
from emulators.replicate.parsing import parse_duration, parse_prefer_wait, parse_version
from emulators.replicate.webhooks import sign
from emulators.scaffold.media import FileKind, FileSpec, file_size, iter_file, paced


@pytest.mark.parametrize("kind", ["png", "mp4", "tar"])
@pytest.mark.parametrize("pad_to", [None, 5_000, 1 << 20])
def test_file_size_matches_the_streamed_bytes(kind: FileKind, pad_to: int | None) -> None:
    spec = FileSpec(kind=kind, seed="abc:0", width=33, height=17, pad_to=pad_to)
    data = b"".join(iter_file(spec))
    assert len(data) == file_size(spec)
    if pad_to is not None and kind != "tar":
        assert len(data) == pad_to
    if kind == "tar":
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = archive.getmember("weights.safetensors")
            extracted = archive.extractfile(member)
            assert extracted is not None and len(extracted.read()) == member.size


def test_signature_matches_the_standard_webhooks_library() -> None:
    key = EmulatorConfig().webhook_key()
    timestamp = 1_700_000_000
    body = b'{"id":"x"}'
    expected = Webhook(DEFAULT_WEBHOOK_SECRET).sign(
        "msg_1", datetime.fromtimestamp(timestamp, UTC), body.decode()
    )
    assert sign(key, "msg_1", timestamp, body) == expected


def test_secret_must_be_standard_base64() -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(webhook_secret="whsec_abc_def")
    with pytest.raises(ValueError):
        EmulatorConfig(webhook_secret="abc")


def test_parsers() -> None:
    # Cancel-After header values (Go-style durations), parsed to a number or None.
    parsed = {text: parse_duration(text) for text in ("1m30s", "300ms", "2", "soon", "5x")}
    assert parsed == {"1m30s": 90, "300ms": pytest.approx(0.3), "2": 2, "soon": None, "5x": None}
    assert parse_prefer_wait("wait") == 60
    assert parse_prefer_wait("respond-async, wait=5") == 5
    assert parse_prefer_wait("wait=600") == 60
    assert parse_prefer_wait(None) is None
    version = "a" * 64
    assert parse_version(version) is not None
    assert parse_version(f"o/n:{version}") is not None
    assert parse_version("o/n:short") is None


def test_per_prediction_faults_override_only_what_they_set() -> None:
    merged = Faults(fail="global", duplicate_webhooks=2).overridden_by(Faults(fail=None))
    assert merged.fail is None
    assert merged.duplicate_webhooks == 2


async def test_paced_keeps_the_bytes_and_takes_the_time() -> None:
    spec = FileSpec(kind="mp4", seed="abc:0", pad_to=300_000)
    started = time.monotonic()
    pieces = [piece async for piece in paced(iter_file(spec), file_size(spec), 0.3)]
    assert time.monotonic() - started >= 0.24
    assert len(pieces) > 4  # spread out, not one sleep and a single burst
    assert b"".join(pieces) == b"".join(iter_file(spec))
