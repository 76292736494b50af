"""Content type and extension from a file's first bytes, not from its URL."""

from __future__ import annotations

_SIGNATURES: list[tuple[bytes, int, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
    (b"ftyp", 4, "video/mp4", "mp4"),
    (b"\x1a\x45\xdf\xa3", 0, "video/webm", "webm"),
    (b"ustar", 257, "application/x-tar", "tar"),
]


def sniff(head: bytes, url: str = "") -> tuple[str, str]:
    """(content type, extension) of a file starting with `head`."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    for magic, offset, content_type, ext in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return content_type, ext
    tail = url.rsplit("?", 1)[0].rsplit("/", 1)[-1]
    ext = tail.rsplit(".", 1)[-1].lower() if "." in tail else ""
    if ext.isalnum() and 0 < len(ext) <= 5:
        return "application/octet-stream", ext
    return "application/octet-stream", "bin"
