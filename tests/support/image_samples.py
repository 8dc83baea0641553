"""Real image bytes for ingest tests: good ones and every kind of bad input the issue lists (built, not stored)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def jpeg(width: int = 96, height: int = 64, color: tuple[int, int, int] = (120, 130, 140), seed: int = 0) -> bytes:
    img = Image.new("RGB", (width, height), color)
    # a few pixels that depend on the seed, so every call can give distinct content
    for i in range(8):
        img.putpixel(((seed * 7 + i * 5) % width, (seed * 3 + i) % height), ((seed * 37) % 256, i * 20, 255 - i))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png(width: int = 80, height: int = 60, seed: int = 0) -> bytes:
    img = Image.new("RGB", (width, height), (seed % 256, 40, 200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    """Header intact, scan data cut off half way (a broken upload)."""
    img = Image.effect_noise((200, 150), 60).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


def text_as_jpg() -> bytes:
    return b"this is not a picture, just some notes someone saved as photo.jpg\n" * 4


def png_bomb(side: int = 20_000) -> bytes:
    """A valid greyscale PNG of side x side zero pixels: a few hundred KB on disk, ~900 MP decoded."""
    raw_row = b"\x00" + b"\x00" * side  # filter byte + one byte per pixel
    compressor = zlib.compressobj(9)
    chunks = [compressor.compress(raw_row) for _ in range(side)]
    chunks.append(compressor.flush())
    idat = b"".join(chunks)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_16bit(width: int = 64, height: int = 48) -> bytes:
    img = Image.new("I;16", (width, height))
    img.putdata([(x * 997 + y * 131) % 65536 for y in range(height) for x in range(width)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def cmyk_jpeg(width: int = 72, height: int = 56) -> bytes:
    img = Image.new("CMYK", (width, height), (10, 200, 30, 5))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def exif_rotated_jpeg(width: int = 120, height: int = 60, orientation: int = 6) -> bytes:
    """Stored landscape, EXIF says rotate 90° (orientation 6): displayed portrait (height x width)."""
    img = Image.new("RGB", (width, height), (200, 10, 10))
    img.paste((10, 200, 10), (0, 0, width // 4, height))  # left quarter green, to see where it ends up
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def gif() -> bytes:
    img = Image.new("P", (64, 64), 3)
    buf = io.BytesIO()
    img.save(buf, "GIF")
    return buf.getvalue()


def one_pixel() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def large_grey_jpeg(width: int = 8000, height: int = 5000) -> bytes:
    """A real, valid JPEG of width x height uniform grey pixels: a few hundred KB on disk, width*height decoded."""
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, "JPEG", quality=50)
    return buf.getvalue()
