"""Image decoding and letterbox preprocessing, numpy + Pillow only.

The letterbox reproduces the geometry Ultralytics uses for a static-shape ONNX model (scale to fit, round each
side, centre with the ``round(d - 0.1)`` / ``round(d + 0.1)`` split, pad value 114) and the pixel maths of
OpenCV's ``INTER_LINEAR`` resize (half-pixel centres, no antialiasing, replicated border).  Pillow's ``resize``
antialiases when it shrinks, which would move confidences away from what the model saw during validation, so the
resize here is an affine ``transform`` with bilinear sampling, which samples exactly like OpenCV.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

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
    try:
        im = Image.open(io.BytesIO(data))
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


# A one-node ONNX graph, serialised: Resize(img uint8 [1,h,w,3], sizes int64[4]) with mode=linear and
# coordinate_transformation_mode=half_pixel (opset 18) -- OpenCV's INTER_LINEAR in onnxruntime's C++ kernels.
# Embedded as bytes so the device needs onnxruntime only, not the onnx package; tests rebuild it with onnx.helper
# and check the bytes are the same graph.
RESIZE_GRAPH = base64.b64decode(
    "CAk61AEKYQoDaW1nCgAKAAoFc2l6ZXMSA291dCIGUmVzaXplKi8KHmNvb3JkaW5hdGVfdHJhbnNmb3JtYXRpb25fbW9kZSIKaGFsZl9w"
    "aXhlbKABAyoRCgRtb2RlIgZsaW5lYXKgAQMSFmxvdXBlX2xldHRlcmJveF9yZXNpemVaHwoDaW1nEhgKFggCEhIKAggBCgMSAWgKAxIB"
    "dwoCCANaEwoFc2l6ZXMSCgoICAcSBAoCCARiIQoDb3V0EhoKGAgCEhQKAggBCgQSAm5oCgQSAm53CgIIA0IECgAQEg=="
)


def _resize_session(threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(RESIZE_GRAPH, opts, providers=["CPUExecutionProvider"])


class Preprocessor:
    """Letterbox + normalise an RGB uint8 HWC array into a reusable NCHW float32 buffer.

    The resize runs in a tiny onnxruntime graph (C++, ~3x faster than Pillow's affine transform, same pixels as
    OpenCV); the normalisation writes straight into the model's input buffer, whose padding is painted once per
    source size.  The buffer is overwritten by the next call: one instance per thread, and callers finish with a
    tensor before preprocessing the next frame (the pipeline alternates two instances).
    """

    def __init__(self, dst_w: int, dst_h: int, threads: int = 1) -> None:
        self.dst_w = dst_w
        self.dst_h = dst_h
        self._buf = np.empty((1, 3, dst_h, dst_w), dtype=np.float32)
        self._last: Letterbox | None = None
        self._resize = _resize_session(threads)
        self._sizes = np.array([1, dst_h, dst_w, 3], dtype=np.int64)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        src_h, src_w = rgb.shape[:2]
        lb = self._last
        if lb is None or lb.src_w != src_w or lb.src_h != src_h:
            lb = Letterbox.fit(src_w, src_h, self.dst_w, self.dst_h)
            self._buf.fill(np.float32(PAD_VALUE) / _F255)  # the padding only changes with the source size
            self._sizes = np.array([1, lb.new_h, lb.new_w, 3], dtype=np.int64)
            self._last = lb
        if (lb.new_w, lb.new_h) != (src_w, src_h):
            batch = np.ascontiguousarray(rgb)[None]
            rgb = self._resize.run(None, {"img": batch, "sizes": self._sizes})[0][0]
        region = self._buf[0, :, lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w]
        np.divide(rgb.transpose(2, 0, 1), _F255, out=region, casting="unsafe")
        return self._buf, lb


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """HWC uint8 RGB array of a decoded image."""
    return np.asarray(im)
