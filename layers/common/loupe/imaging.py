"""Images by content, never by name: the format from magic bytes, then what ingest accepts — size, header
dimensions against the pixel limit before any decoding, a full decode — and an upright 8-bit rendition when the
upload is not usable as is (EXIF orientation, CMYK, 16-bit samples). Used by ingest (``loupe.ingest``), the importer
and, for the same limits, the edge component's checks."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 24_000_000  # 6000x4000: a 24 MP camera frame; 40 MP decoded and normalised took ~470 MB
MIN_SIDE = 32
MAX_SIDE = 20_000

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff_format(data: bytes) -> str | None:
    """'jpg' or 'png' when the bytes start like one, else None."""
    if data.startswith(JPEG_MAGIC):
        return "jpg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


# Other formats people drop by mistake, for a clearer reason than "not an image".
_OTHER_MAGIC = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"RIFF": "RIFF/WebP",
    b"%PDF": "PDF",
}


class ImageRejected(ValueError):
    """The bytes are not an image Loupe accepts; ``reason`` says why, in words fit for a tag."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS
    min_side: int = MIN_SIDE
    max_side: int = MAX_SIDE


@dataclass
class Inspected:
    """An accepted image: its identity, displayed size and, when needed, the normalised rendition."""

    sha256: str
    format: str  # "jpg" | "png"
    size: int
    width: int  # after EXIF orientation
    height: int
    mode: str
    orientation: int = 1
    normalized: bytes | None = None  # upright 8-bit RGB/L bytes, when the upload is not usable as is
    notes: list[str] = field(default_factory=list)


def _describe_other(data: bytes) -> str:
    for magic, name in _OTHER_MAGIC.items():
        if data.startswith(magic):
            return f"a {name} file, not a JPEG or PNG"
    try:
        data[:512].decode("utf-8")
        return "text, not a JPEG or PNG"
    except UnicodeDecodeError:
        return "not a JPEG or PNG (unknown content)"


def inspect_image(data: bytes, limits: Limits = Limits()) -> Inspected:
    """Validate ``data``; raises :class:`ImageRejected` with the reason, never anything else."""
    size = len(data)
    if size == 0:
        raise ImageRejected("empty object (0 bytes)", "empty")
    if size > limits.max_bytes:
        raise ImageRejected(f"object too large: {size} bytes > {limits.max_bytes}", "too-large")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(_describe_other(data), "not-an-image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data))  # reads the header only
            width, height = header.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own check (Image.MAX_IMAGE_PIXELS, ~89 MP: warning, twice that: error), from the header too
        raise ImageRejected(f"too many pixels (decompression bomb refused from its header): {exc}", "bomb") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(
            f"{fmt.upper()} header does not decode (truncated or corrupt): {_clean(exc)}", "corrupt"
        ) from exc
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"too many pixels: {width}x{height} = {width * height} > limit {limits.max_pixels} "
            "(decompression bomb refused from its header, not decoded)",
            "bomb",
        )
    if max(width, height) > limits.max_side:
        raise ImageRejected(
            f"image too long: {width}x{height} (limit {limits.max_side} pixels a side; "
            "decompression bomb refused from its header, not decoded)",
            "bomb",
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(f"image too small: {width}x{height} (minimum {limits.min_side} pixels a side)", "too-small")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # full decode: truncated or corrupt data fails here
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"{fmt.upper()} does not decode (truncated or corrupt): {_clean(exc)}", "corrupt") from exc
    mode = image.mode
    orientation = int(image.getexif().get(0x0112, 1) or 1)
    notes: list[str] = []
    needs_copy = False
    if orientation not in (1, 0):
        notes.append(f"EXIF orientation {orientation} applied")
        needs_copy = True
    if mode not in ("RGB", "L"):
        notes.append(f"{mode} samples converted to 8-bit")
        needs_copy = True
    normalized = None
    out_w, out_h = width, height
    if needs_copy:
        normalized, out_w, out_h = _normalize(image, fmt)
    return Inspected(
        sha256=_sha256(data),
        format=fmt,
        size=size,
        width=out_w,
        height=out_h,
        mode=mode,
        orientation=orientation,
        normalized=normalized,
        notes=notes,
    )


def _clean(exc: Exception) -> str:
    return re.sub(r"\s*<[^>]*>", "", str(exc)).strip() or type(exc).__name__


def _to_8bit(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) greyscale: scale the used range down to 8 bits
        wide = image.convert("I")
        high = wide.getextrema()[1]  # one band: (min, max) numbers
        top = max(1, int(high)) if isinstance(high, (int, float)) else 1
        scale = 255.0 / top if top > 255 else 1.0
        return wide.point(lambda v: v * scale).convert("L")
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("LA", "La", "PA"):
        return image.convert("L") if image.mode != "PA" else image.convert("RGB")
    return image.convert("RGB")  # CMYK, YCbCr, P, RGBA, 1, ...


def _normalize(image: Image.Image, fmt: str) -> tuple[bytes, int, int]:
    upright = ImageOps.exif_transpose(image) or image
    eight = _to_8bit(upright)
    buf = io.BytesIO()
    if fmt == "jpg":
        eight.save(buf, format="JPEG", quality=95)
    else:
        eight.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), eight.width, eight.height


def _sha256(data: bytes) -> str:
    """The image's identity (the ledger key): SHA-256 of the uploaded bytes (``loupe.datasets.sha256_bytes``, which
    imports this module)."""
    return hashlib.sha256(data).hexdigest()
