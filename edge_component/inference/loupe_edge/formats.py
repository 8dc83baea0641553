"""The encoded frame formats the component accepts: JPEG and PNG, judged by content, never by file name.

Cloud ingest (``loupe.imaging.inspect_image``, via ``loupe.imaging.sniff_format``) accepts JPEG and PNG only and
quarantines anything else, so a frame in another format could be inferred on but never labeled.  Decoding only
these two also keeps the rest of Pillow's decoders away from camera-folder input: by default ``Image.open`` tries
every registered plugin, and some hand the bytes to other programs or large parsers (EPS runs Ghostscript;
TIFF, PSD, ...).  So a frame is checked by its magic bytes before decoding, decoded with
``Image.open(fp, formats=DECODERS)``, and anything else is refused with the reason.  What the device uploads is
re-checked the same way (:func:`sniff`), so an upload is always a format ingest accepts.

Refusing rather than transcoding: a camera that writes BMP or TIFF can be configured to write PNG (lossless) or
JPEG; transcoding on the device would need the very decoders this keeps out, and would label bytes the camera
never produced.
"""

from __future__ import annotations

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DECODERS = ("JPEG", "PNG")  # Pillow format names for Image.open(..., formats=DECODERS)
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}

# Formats a camera folder may still receive, for a clearer reason than "unknown content".
_OTHERS = (
    (b"%!PS", "an EPS/PostScript file"),
    (b"\xc5\xd0\xd3\xc6", "an EPS file (DOS binary header)"),
    (b"GIF87a", "a GIF file"),
    (b"GIF89a", "a GIF file"),
    (b"BM", "a BMP file"),
    (b"II*\x00", "a TIFF file"),
    (b"MM\x00*", "a TIFF file"),
    (b"RIFF", "a RIFF/WebP file"),
    (b"%PDF", "a PDF file"),
    (b"8BPS", "a PSD file"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 file"),
)


def sniff(data: bytes | None) -> str | None:
    """``"jpg"`` or ``"png"`` when the bytes start like one, else None."""
    if not data:
        return None
    if data.startswith(JPEG_MAGIC):
        return "jpg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


def describe(data: bytes) -> str:
    for magic, what in _OTHERS:
        if data.startswith(magic):
            return what
    return "not a JPEG or PNG (unknown content)"


def refusal(data: bytes) -> str | None:
    """Why these bytes are not a frame the component decodes, or None when they are a JPEG or a PNG."""
    if sniff(data) is not None:
        return None
    return f"unsupported format: {describe(data)}; only JPEG and PNG frames are decoded (what cloud ingest accepts)"
