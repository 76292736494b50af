"""Image dimensions and thumbnails (Pillow), for image outputs only.

Videos get no thumbnail: a poster frame needs a video decoder (ffmpeg), which this project does
not ship. Making a thumbnail never fails a job: `describe_image` returns the reason instead,
which the output records in its metadata.

Blocking (decoding is CPU work): run it in a thread. Memory depends on the pixel count, not the
file size, and is capped by MAX_THUMBNAIL_PIXELS: larger images keep their dimensions but get
no thumbnail. JPEGs are decoded at reduced scale (`Image.draft`), so they cost far less.

Pillow reads some things whole: every PNG chunk it does not know (a 1 GB private chunk would be
1 GB of memory) and whole WebP files. So a PNG is first copied without its ancillary chunks
(streamed, a chunk header at a time), and other formats over MAX_SOURCE_BYTES get no thumbnail.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps

THUMBNAIL_FORMAT = ("WEBP", "image/webp", "webp")
# 64 MP: an 8K x 8K image, ~256 MB decoded as RGBA: the most a thumbnail may cost.
MAX_THUMBNAIL_PIXELS = 64_000_000
# Formats other than PNG are opened as they are: only up to this size.
MAX_SOURCE_BYTES = 64 * 1024 * 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a PNG keeps for its thumbnail: the image, its colours and its orientation. APNG frames
# (fcTL/fdAT) go too: the thumbnail is the default image.
_PNG_KEEP = frozenset(
    {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
     b"eXIf"}
)  # fmt: skip
_PNG_MAX_ANCILLARY = 1024 * 1024
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF: rotated a quarter turn
_EXIF_ORIENTATION = 0x0112


@dataclass
class ImageFacts:
    """What an image output records: its size as displayed and, if made, its thumbnail."""

    width: int | None = None
    height: int | None = None
    thumbnail: Path | None = None
    thumbnail_width: int | None = None
    thumbnail_height: int | None = None
    thumbnail_bytes: int | None = None
    error: str | None = None


def describe_image(source: Path, thumbnail: Path, max_edge: int) -> ImageFacts:
    """Dimensions of the image at `source`; a WebP thumbnail at `thumbnail` if possible."""
    facts = ImageFacts()
    stripped = thumbnail.with_name(f"{thumbnail.name}.source.png")
    try:
        readable = source
        if _strip_png(source, stripped):
            readable = stripped
        elif source.stat().st_size > MAX_SOURCE_BYTES:
            facts.error = f"no thumbnail: files over {MAX_SOURCE_BYTES:,} bytes are not decoded"
            return facts
        with warnings.catch_warnings():
            # We apply our own pixel cap below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(readable) as image:
                width, height = image.size
                orientation = image.getexif().get(_EXIF_ORIENTATION)
                if orientation in _TRANSPOSED_ORIENTATIONS:
                    width, height = height, width
                facts.width, facts.height = width, height
                if width * height > MAX_THUMBNAIL_PIXELS:
                    facts.error = (
                        f"no thumbnail: {width}x{height} is over {MAX_THUMBNAIL_PIXELS:,} pixels"
                    )
                    return facts
                image.draft("RGB", (max_edge, max_edge))  # JPEG: decode at reduced scale
                small = ImageOps.exif_transpose(image)
                small.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
                small = _web_mode(small)
                small.save(thumbnail, format=THUMBNAIL_FORMAT[0], quality=80, method=4)
                facts.thumbnail = thumbnail
                facts.thumbnail_width, facts.thumbnail_height = small.size
                facts.thumbnail_bytes = thumbnail.stat().st_size
    except Exception as exc:  # a broken or exotic image: recorded, never fatal
        facts.thumbnail = None
        reason = str(exc).replace(str(stripped), "the file").replace(str(source), "the file")
        facts.error = f"no thumbnail: {type(exc).__name__}: {reason}"[:500]
        thumbnail.unlink(missing_ok=True)
    finally:
        stripped.unlink(missing_ok=True)
    return facts


def _strip_png(source: Path, target: Path) -> bool:
    """Copy the PNG at `source` to `target` with only the chunks in _PNG_KEEP (False: no PNG).

    Reads one 8-byte chunk header at a time and seeks past what it drops, so a huge chunk
    costs neither memory nor a copy. A broken file is copied as far as it goes: Pillow then
    says what is wrong with it.
    """
    with source.open("rb") as src:
        if src.read(8) != _PNG_SIGNATURE:
            return False
        with target.open("wb") as out:
            out.write(_PNG_SIGNATURE)
            while len(header := src.read(8)) == 8:
                length, kind = struct.unpack(">I4s", header)
                if kind in _PNG_KEEP and (kind == b"IDAT" or length <= _PNG_MAX_ANCILLARY):
                    out.write(header)
                    _copy_exactly(src, out, length + 4)  # data and CRC
                else:
                    src.seek(length + 4, 1)
                if kind == b"IEND":
                    break
    return True


def _copy_exactly(src: BinaryIO, out: BinaryIO, size: int) -> None:
    while size > 0:
        block = src.read(min(size, 1024 * 1024))
        if not block:
            return
        out.write(block)
        size -= len(block)


def _web_mode(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency (what WebP can hold)."""
    if image.mode in ("RGB", "RGBA"):
        return image
    transparent = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if transparent else "RGB")
