"""Content type and extension from a file's first bytes, never from its URL.

A provider's URL may say `.png` for a JPEG, or nothing at all; the bytes don't lie. Unknown
bytes are stored as `application/octet-stream` with `.bin`, so nothing we serve back is ever
taken for HTML or SVG by a browser.
"""

from __future__ import annotations

HEAD_BYTES = 512  # enough for every signature below (tar's is at 257)

UNKNOWN = ("application/octet-stream", "bin")

_SIGNATURES: list[tuple[bytes, int, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
    (b"II*\x00", 0, "image/tiff", "tiff"),
    (b"MM\x00*", 0, "image/tiff", "tiff"),
    (b"OggS", 0, "audio/ogg", "ogg"),
    (b"ID3", 0, "audio/mpeg", "mp3"),
    (b"fLaC", 0, "audio/flac", "flac"),
    (b"%PDF-", 0, "application/pdf", "pdf"),
    (b"glTF", 0, "model/gltf-binary", "glb"),
    (b"PK\x03\x04", 0, "application/zip", "zip"),
    (b"\x1f\x8b", 0, "application/gzip", "gz"),
    (b"ustar", 257, "application/x-tar", "tar"),
]

# ISO base media files (`....ftyp<brand>`): the major brand says what is inside.
_FTYP_BRANDS: dict[bytes, tuple[str, str]] = {
    b"avif": ("image/avif", "avif"),
    b"avis": ("image/avif", "avif"),
    b"heic": ("image/heic", "heic"),
    b"heix": ("image/heic", "heic"),
    b"mif1": ("image/heif", "heif"),
    b"msf1": ("image/heif", "heif"),
    b"qt  ": ("video/quicktime", "mov"),
    b"M4A ": ("audio/mp4", "m4a"),
}
_RIFF_FORMS: dict[bytes, tuple[str, str]] = {
    b"WEBP": ("image/webp", "webp"),
    b"WAVE": ("audio/wav", "wav"),
    b"AVI ": ("video/x-msvideo", "avi"),
}
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


def sniff(head: bytes) -> tuple[str, str]:
    """(content type, extension) of a file starting with `head` (its first HEAD_BYTES)."""
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_FORMS:
        return _RIFF_FORMS[head[8:12]]
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], ("video/mp4", "mp4"))
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "image/bmp", "bmp"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, or WebM when its DocType says so
        return ("video/webm", "webm") if b"webm" in head[:64] else ("video/x-matroska", "mkv")
    for magic, offset, content_type, ext in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return content_type, ext
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "audio/mpeg", "mp3"  # an MPEG audio frame without an ID3 tag
    return UNKNOWN


def is_image(content_type: str) -> bool:
    return content_type.startswith("image/")
