"""Output files made on the fly: a real PNG, a small MP4 and a real tar of "weights".

A file is described by a small `FileSpec` and generated on each download, so padding a file to
hundreds of megabytes (to test copying large outputs) costs no memory; the padding is streamed
in chunks. `paced` slows a stream down (the `file_delay_seconds` fault).

Outputs follow their inputs: an MP4 says it lasts the `seconds` asked for (its movie header),
and an upscale or an edit is made from the job's input image (`render_from_input`: fetched,
enlarged by the scale, or visibly changed), kept as the spec's `image`. An input image that
can't be fetched leaves the generated picture in its place.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import tarfile
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal

FileKind = Literal["png", "mp4", "tar"]

CONTENT_TYPES: dict[FileKind, str] = {
    "png": "image/png",
    "mp4": "video/mp4",
    "tar": "application/x-tar",
}
MAX_SIDE = 256
CHUNK_SIZE = 64 * 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary, private, safe-to-copy chunk type: PNG readers skip it, so padding keeps the PNG valid.
_PNG_PAD_TYPE = b"emUl"
_PNG_CHUNK_OVERHEAD = 12
_MAX_PNG_CHUNK = 1 << 30
_TAR_BLOCK = 512
_TAR_MEMBER = "weights.safetensors"
_DEFAULT_TAR_PAYLOAD = 4096
_DEFAULT_MP4_PAYLOAD = 1024
_MP4_TIMESCALE = 1000
DEFAULT_VIDEO_SECONDS = 5.0
MAX_VIDEO_SECONDS = 600.0
PACE_SLICE_SECONDS = 0.05


@dataclass(frozen=True)
class FileSpec:
    """Everything needed to regenerate one output file byte for byte."""

    kind: FileKind
    seed: str
    width: int = 64
    height: int = 64
    pad_to: int | None = None
    image: bytes | None = None  # a PNG made from the job's input (instead of the seed's)
    seconds: float | None = None  # how long a video lasts (DEFAULT_VIDEO_SECONDS if None)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]


def clamp_side(value: object, default: int) -> int:
    """An image side from model input, capped so generating it stays cheap."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return max(1, min(int(value), MAX_SIDE))


def file_size(spec: FileSpec) -> int:
    """Size in bytes of what `iter_file(spec)` yields, for Content-Length."""
    if spec.kind == "png":
        base = len(_png_base(spec))
        return base + _png_padding(spec, base)[1]
    if spec.kind == "mp4":
        return len(_mp4_ftyp()) + len(_mp4_moov(spec)) + 8 + _mp4_payload_size(spec)
    payload = _tar_payload_size(spec)
    return _TAR_BLOCK + _round_up(payload, _TAR_BLOCK) + 2 * _TAR_BLOCK


def iter_file(spec: FileSpec) -> Iterator[bytes]:
    """The file's bytes in chunks of at most CHUNK_SIZE (large paddings are never held whole)."""
    if spec.kind == "png":
        yield from _iter_png(spec)
    elif spec.kind == "mp4":
        yield from _iter_mp4(spec)
    else:
        yield from _iter_tar(spec)


async def paced(chunks: Iterator[bytes], total: int, seconds: float) -> AsyncIterator[bytes]:
    """`chunks` (`total` bytes in all) spread evenly over about `seconds`.

    The body is cut into slices of about PACE_SLICE_SECONDS' worth of bytes; each leaves once
    its share of the time since the first has passed, so the last byte goes out at `seconds`
    (or later, if sending itself is slower). Sleeps aim at absolute times: no drift.
    """
    if total <= 0 or seconds <= 0:
        for chunk in chunks:
            yield chunk
        return
    slice_bytes = max(1, math.ceil(total / max(1, math.ceil(seconds / PACE_SLICE_SECONDS))))
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    for chunk in chunks:
        for offset in range(0, len(chunk), slice_bytes):
            piece = chunk[offset : offset + slice_bytes]
            sent += len(piece)
            wait = started + seconds * min(sent / total, 1.0) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            yield piece


def _colour(seed: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(seed.encode()).digest()
    return digest[0], digest[1], digest[2]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_base(spec: FileSpec) -> bytes:
    """An RGB PNG: the seed's colour, shaded top to bottom so it isn't a flat square."""
    if spec.image is not None:
        return spec.image
    red, green, blue = _colour(spec.seed)
    rows = []
    for y in range(spec.height):
        shade = (y * 96) // max(spec.height - 1, 1)
        pixel = bytes(((red + shade) % 256, (green + shade) % 256, (blue + shade) % 256))
        rows.append(b"\x00" + pixel * spec.width)
    header = struct.pack(">IIBBBBB", spec.width, spec.height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + _png_chunk(b"IEND", b"")
    )


def _png_padding(spec: FileSpec, base_size: int) -> tuple[list[int], int]:
    """Data lengths of the padding chunks and the bytes they add (0 if it can't fit exactly)."""
    if spec.pad_to is None or spec.pad_to < base_size + _PNG_CHUNK_OVERHEAD:
        return [], 0
    remaining = spec.pad_to - base_size
    lengths: list[int] = []
    while remaining > 0:
        if remaining <= _MAX_PNG_CHUNK + _PNG_CHUNK_OVERHEAD:
            lengths.append(remaining - _PNG_CHUNK_OVERHEAD)
            remaining = 0
        else:
            # Leave enough for at least one more whole chunk header.
            lengths.append(_MAX_PNG_CHUNK)
            remaining -= _MAX_PNG_CHUNK + _PNG_CHUNK_OVERHEAD
    return lengths, spec.pad_to - base_size


def _iter_png(spec: FileSpec) -> Iterator[bytes]:
    base = _png_base(spec)
    iend = _png_chunk(b"IEND", b"")
    lengths, _ = _png_padding(spec, len(base))
    # Padding chunks go between IDAT and IEND; IEND must stay last.
    yield base[: -len(iend)]
    for length in lengths:
        yield struct.pack(">I", length) + _PNG_PAD_TYPE
        crc = zlib.crc32(_PNG_PAD_TYPE)
        for chunk in _zeros(length):
            crc = zlib.crc32(chunk, crc)
            yield chunk
        yield struct.pack(">I", crc & 0xFFFFFFFF)
    yield iend


def _mp4_ftyp() -> bytes:
    brands = b"isom" + b"iso2" + b"avc1" + b"mp41"
    body = b"isom" + struct.pack(">I", 0x200) + brands
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body


def _mp4_moov(spec: FileSpec) -> bytes:
    """A `moov` with just its movie header: how long the video lasts, in milliseconds."""
    seconds = DEFAULT_VIDEO_SECONDS if spec.seconds is None else spec.seconds
    unity = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = (
        struct.pack(">B3xIII", 0, 0, 0, _MP4_TIMESCALE)
        + struct.pack(">I", round(seconds * _MP4_TIMESCALE))
        + struct.pack(">IH10x", 0x10000, 0x100)  # rate 1.0, volume 1.0
        + unity
        + bytes(24)
        + struct.pack(">I", 1)  # next track id
    )
    box = struct.pack(">I", 8 + len(mvhd)) + b"mvhd" + mvhd
    return struct.pack(">I", 8 + len(box)) + b"moov" + box


def mp4_declared_length(data: bytes) -> float | None:
    """How long an MP4 says it lasts (its movie header), or None if it says nothing."""
    at = data.find(b"mvhd")
    if at < 4 or len(data) < at + 24:
        return None
    timescale, duration = struct.unpack(">II", data[at + 16 : at + 24])
    return duration / timescale if timescale else None


def _mp4_payload_size(spec: FileSpec) -> int:
    header = len(_mp4_ftyp()) + len(_mp4_moov(spec)) + 8
    if spec.pad_to is not None and spec.pad_to > header:
        return spec.pad_to - header
    return _DEFAULT_MP4_PAYLOAD


def _iter_mp4(spec: FileSpec) -> Iterator[bytes]:
    payload = _mp4_payload_size(spec)
    yield _mp4_ftyp()
    yield _mp4_moov(spec)
    yield struct.pack(">I", 8 + payload) + b"mdat"
    yield from _pattern(spec.seed, payload)


def _tar_payload_size(spec: FileSpec) -> int:
    overhead = 3 * _TAR_BLOCK
    if spec.pad_to is not None and spec.pad_to > overhead:
        return spec.pad_to - overhead
    return _DEFAULT_TAR_PAYLOAD


def _iter_tar(spec: FileSpec) -> Iterator[bytes]:
    payload = _tar_payload_size(spec)
    info = tarfile.TarInfo(_TAR_MEMBER)
    info.size = payload
    info.mode = 0o644
    info.mtime = 0
    yield info.tobuf(format=tarfile.USTAR_FORMAT)
    yield from _pattern(spec.seed, payload)
    yield bytes(_round_up(payload, _TAR_BLOCK) - payload)
    yield bytes(2 * _TAR_BLOCK)


def _round_up(value: int, block: int) -> int:
    return -(-value // block) * block


def _zeros(total: int) -> Iterator[bytes]:
    full = bytes(CHUNK_SIZE)
    while total > 0:
        size = min(total, CHUNK_SIZE)
        yield full if size == CHUNK_SIZE else bytes(size)
        total -= size


def _pattern(seed: str, total: int) -> Iterator[bytes]:
    """Deterministic non-zero bytes, so a truncated copy is told apart from a complete one."""
    block = hashlib.sha256(seed.encode()).digest() * (CHUNK_SIZE // 32)
    while total > 0:
        size = min(total, CHUNK_SIZE)
        yield block if size == CHUNK_SIZE else block[:size]
        total -= size
