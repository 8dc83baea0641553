"""Image decoding and letterbox preprocessing, numpy + Pillow only.

The letterbox reproduces the geometry Ultralytics uses for a static-shape ONNX model (scale to fit, round each
side, centre with the ``round(d - 0.1)`` / ``round(d + 0.1)`` split, pad value 114, RGB, /255) and the pixel
maths of OpenCV's ``INTER_LINEAR`` resize, bit for bit (see :class:`_Resizer`).  Pillow's ``resize`` antialiases
when it shrinks and would feed the model different pixels than it saw in training and validation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

from loupe_edge.formats import DECODERS, refusal

PAD_VALUE = 114
_F255 = np.float32(255.0)

# Truncated files must fail loudly, never decode to a half-grey frame.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageRejected(ValueError):
    """The bytes are not a usable image (not an image, truncated, too large)."""


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterbox: original size, resized size and padding, all in pixels."""

    src_w: int
    src_h: int
    new_w: int
    new_h: int
    left: int
    top: int
    dst_w: int
    dst_h: int

    @classmethod
    def fit(cls, src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
        r = min(dst_h / src_h, dst_w / src_w)
        new_w = max(round(src_w * r), 1)
        new_h = max(round(src_h * r), 1)
        dw = (dst_w - new_w) / 2
        dh = (dst_h - new_h) / 2
        return cls(src_w, src_h, new_w, new_h, round(dw - 0.1), round(dh - 0.1), dst_w, dst_h)

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Map boxes (N, 4) from model-input pixels back to source pixels, clipped to the image."""
        out = np.empty_like(xyxy, dtype=np.float32)
        gx = self.new_w / self.src_w
        gy = self.new_h / self.src_h
        out[:, 0] = (xyxy[:, 0] - self.left) / gx
        out[:, 2] = (xyxy[:, 2] - self.left) / gx
        out[:, 1] = (xyxy[:, 1] - self.top) / gy
        out[:, 3] = (xyxy[:, 3] - self.top) / gy
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """Map boxes from source pixels to model-input pixels (the inverse of :meth:`to_source`)."""
        out = np.empty_like(xyxy, dtype=np.float32)
        gx = self.new_w / self.src_w
        gy = self.new_h / self.src_h
        out[:, 0::2] = xyxy[:, 0::2] * gx + self.left
        out[:, 1::2] = xyxy[:, 1::2] * gy + self.top
        return out


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode bytes to an RGB Pillow image, refusing non-images, truncated files and oversized frames."""
    if not data:
        raise ImageRejected("empty file")
    unsupported = refusal(data)  # by magic bytes: JPEG and PNG only (see loupe_edge.formats)
    if unsupported:
        raise ImageRejected(unsupported)
    try:
        im: Image.Image = Image.open(io.BytesIO(data), formats=DECODERS)  # no other Pillow plugin sees the bytes
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image too large: {exc}") from exc
    except Exception as exc:  # Pillow raises several types for non-image bytes
        raise ImageRejected(f"not a decodable image: {exc}") from exc
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageRejected(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageRejected(f"image too large: {w}x{h} = {w * h} pixels > limit {max_pixels}")
    try:
        if im.mode != "RGB":
            im = im.convert("RGB")
        else:
            im.load()
    except Exception as exc:  # truncated data surfaces here (OSError) or as a decoder error
        raise ImageRejected(f"image data is incomplete or corrupt: {exc}") from exc
    return im


def _axis_table(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit fixed-point weights of a bilinear resize along one axis, computed the way
    OpenCV's ``INTER_LINEAR`` does (single-precision source coordinate, half-pixel centres, clamped borders)."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    frac = (f - i0.astype(np.float32)).astype(np.float32)
    low = i0 < 0
    frac[low] = 0
    i0[low] = 0
    high = i0 >= src - 1
    frac[high] = 0
    i0[high] = src - 1
    i1 = np.minimum(i0 + 1, src - 1)
    w0 = np.rint((np.float32(1) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    return i0, i1, w0, (_COEF_SCALE - w0).astype(np.int32)


_COEF_SCALE = 2048


class _Resizer:
    """Bilinear resize of HxWx3 uint8 to new_h x new_w, bit-exact with ``cv2.resize(..., INTER_LINEAR)`` when
    shrinking (OpenCV's fixed-point arithmetic: 11-bit weights, horizontal pass, ``>> 4``, vertical pass with
    ``>> 16`` per term, ``(+2) >> 2``), in numpy with preallocated buffers.  Being exact matters: a one-grey-level
    difference is enough to flip a detection that sits on the confidence threshold or an NMS tie.

    ``channels=1`` resizes the first channel only (of the same HxWx3 input): for a grey frame (R = G = B) that is
    the whole result at a third of the work, since OpenCV treats the channels independently."""

    def __init__(self, src_w: int, src_h: int, new_w: int, new_h: int, channels: int = 3) -> None:
        x0, x1, wx0, wx1 = _axis_table(src_w, new_w)
        y0, y1, wy0, wy1 = _axis_table(src_h, new_h)
        ch = np.arange(channels)
        self.channels = channels
        self.src_w, self.src_h, self.new_w, self.new_h = src_w, src_h, new_w, new_h
        self.xi0 = (x0[:, None] * 3 + ch).ravel()
        self.xi1 = (x1[:, None] * 3 + ch).ravel()
        self.wx0 = np.repeat(wx0, channels)[None, :]
        self.wx1 = np.repeat(wx1, channels)[None, :]
        self.y0, self.y1 = y0, y1
        self.wy0, self.wy1 = wy0[:, None], wy1[:, None]
        row = new_w * channels
        self._g0 = np.empty((src_h, row), np.uint8)
        self._g1 = np.empty((src_h, row), np.uint8)
        self._h = np.empty((src_h, row), np.int32)
        self._t = np.empty((src_h, row), np.int32)
        self._r0 = np.empty((new_h, row), np.int32)
        self._r1 = np.empty((new_h, row), np.int32)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Returns the resized image as int32 (new_h, new_w, channels) in 0..255 (a view of an internal buffer)."""
        flat = np.ascontiguousarray(rgb).reshape(self.src_h, self.src_w * 3)
        g0, g1, h, t, r0, r1 = self._g0, self._g1, self._h, self._t, self._r0, self._r1
        np.take(flat, self.xi0, axis=1, out=g0)
        np.take(flat, self.xi1, axis=1, out=g1)
        np.multiply(g0, self.wx0, out=h)
        np.multiply(g1, self.wx1, out=t)
        np.add(h, t, out=h)
        np.right_shift(h, 4, out=h)
        np.take(h, self.y0, axis=0, out=r0)
        np.take(h, self.y1, axis=0, out=r1)
        np.multiply(r0, self.wy0, out=r0)
        np.right_shift(r0, 16, out=r0)
        np.multiply(r1, self.wy1, out=r1)
        np.right_shift(r1, 16, out=r1)
        np.add(r0, r1, out=r0)
        np.add(r0, 2, out=r0)
        np.right_shift(r0, 2, out=r0)
        return r0.reshape(self.new_h, self.new_w, self.channels)


def is_grey(rgb: np.ndarray) -> bool:
    """True when every pixel has R = G = B (a monochrome camera, or a grey JPEG decoded to RGB).  A colour frame
    is usually told apart by its first row, so the full check is only paid by frames that are grey."""
    flat = rgb.reshape(rgb.shape[0], -1)
    first = flat[:1]
    if not (np.array_equal(first[:, 0::3], first[:, 1::3]) and np.array_equal(first[:, 1::3], first[:, 2::3])):
        return False
    return bool(np.array_equal(flat[:, 0::3], flat[:, 1::3]) and np.array_equal(flat[:, 1::3], flat[:, 2::3]))


class Preprocessor:
    """Letterbox + normalise an RGB uint8 HWC array into a reusable NCHW float32 buffer.

    The padding of the buffer is painted once per source size and the resize writes straight into the model's
    input buffer.  The buffer is overwritten by the next call: one instance per thread, and callers finish with
    a tensor before preprocessing the next frame (the pipeline rotates a ring of instances).  ``resizers`` is a
    cache of resize tables and scratch buffers that instances used by the same thread may share (only the
    output tensor has to rotate), so a ring costs one set of scratch buffers, not one per slot.
    """

    def __init__(self, dst_w: int, dst_h: int, resizers: dict[tuple[int, ...], _Resizer] | None = None) -> None:
        self.dst_w = dst_w
        self.dst_h = dst_h
        self._buf = np.empty((1, 3, dst_h, dst_w), dtype=np.float32)
        self._last: Letterbox | None = None
        self._resizers = resizers if resizers is not None else {}
        self._resizer: _Resizer | None = None
        self._grey_resizer: _Resizer | None = None

    def _cached(self, src_w: int, src_h: int, new_w: int, new_h: int, channels: int) -> _Resizer:
        key = (src_w, src_h, new_w, new_h, channels)
        resizer = self._resizers.get(key)
        if resizer is None:
            resizer = self._resizers[key] = _Resizer(src_w, src_h, new_w, new_h, channels)
        return resizer

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        src_h, src_w = rgb.shape[:2]
        lb = self._last
        if lb is None or lb.src_w != src_w or lb.src_h != src_h:
            lb = Letterbox.fit(src_w, src_h, self.dst_w, self.dst_h)
            self._buf.fill(np.float32(PAD_VALUE) / _F255)  # the padding only changes with the source size
            resize = (lb.new_w, lb.new_h) != (src_w, src_h)
            self._resizer = self._cached(src_w, src_h, lb.new_w, lb.new_h, 3) if resize else None
            self._grey_resizer = self._cached(src_w, src_h, lb.new_w, lb.new_h, 1) if resize else None
            self._last = lb
        region = self._buf[0, :, lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w]
        if self._grey_resizer is not None and is_grey(rgb):
            # the same pixels as the 3-channel path, computed once and copied to the other two planes
            np.divide(self._grey_resizer(rgb)[:, :, 0], _F255, out=region[0], casting="unsafe")
            region[1] = region[0]
            region[2] = region[0]
            return self._buf, lb
        pixels = self._resizer(rgb) if self._resizer is not None else rgb
        np.divide(pixels.transpose(2, 0, 1), _F255, out=region, casting="unsafe")
        return self._buf, lb
