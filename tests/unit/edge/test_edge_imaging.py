"""Letterbox geometry and pixels, box mapping, and refusal of unusable images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loupe.imaging import ImageRejected as IngestRejected
from loupe.imaging import inspect_image, sniff_format
from loupe_edge.formats import refusal, sniff
from loupe_edge.imaging import ImageRejected, Letterbox, Preprocessor, _Resizer, is_grey, open_image


@pytest.mark.parametrize(
    ("w", "h", "dst"),
    [(450, 300, 320), (300, 450, 320), (640, 480, 416), (1, 3000, 320), (320, 320, 320), (100, 37, 640)],
)
def test_letterbox_geometry_matches_ultralytics(w: int, h: int, dst: int) -> None:
    pytest.importorskip("cv2", reason="Ultralytics' LetterBox (the reference) needs OpenCV (dev venv)")
    from ultralytics.data.augment import LetterBox

    params = LetterBox((dst, dst), auto=False).get_params({"img": np.zeros((h, w, 3), np.uint8)})
    lb = Letterbox.fit(w, h, dst, dst)
    assert (lb.new_w, lb.new_h) == tuple(params["new_unpad"])
    assert (lb.left, lb.top) == (params["left"], params["top"])
    assert lb.left + lb.new_w + params["right"] == dst
    assert lb.top + lb.new_h + params["bottom"] == dst


def test_box_mapping_round_trips_and_clips() -> None:
    lb = Letterbox.fit(450, 300, 320, 320)
    src = np.array([[10, 20, 200, 150], [0, 0, 450, 300]], dtype=np.float32)
    back = lb.to_source(lb.to_input(src))
    np.testing.assert_allclose(back, src, atol=1e-3)
    # a box reaching into the padding is clipped to the image
    outside = np.array([[-5, lb.top - 20, 330, lb.top + lb.new_h + 20]], dtype=np.float32)
    mapped = lb.to_source(outside)
    assert mapped[0, 0] == 0 and mapped[0, 1] == 0 and mapped[0, 2] == 450 and mapped[0, 3] == 300


def test_box_mapping_matches_ultralytics_scale_boxes() -> None:
    torch = pytest.importorskip("torch", reason="Ultralytics' scale_boxes (the reference) needs torch")
    from ultralytics.utils.ops import scale_boxes

    lb = Letterbox.fit(450, 300, 320, 320)
    boxes = np.array([[30.5, 70.25, 120.0, 200.0], [200, 60, 310, 250]], dtype=np.float32)
    ref = scale_boxes((320, 320), torch.from_numpy(boxes.copy()), (300, 450)).numpy()
    np.testing.assert_allclose(lb.to_source(boxes), ref, atol=1e-3)


def test_preprocess_matches_ultralytics_pixels(metal_tags_dir: Path) -> None:
    cv2 = pytest.importorskip("cv2", reason="the reference path decodes with OpenCV (dev venv)")
    from ultralytics.data.augment import LetterBox

    files = sorted((metal_tags_dir / "images").rglob("*.jpg"))[:12]
    assert files
    for size in (320, 416):
        pre = Preprocessor(size, size)
        for f in files:
            ref = LetterBox((size, size), auto=False)(image=cv2.imread(str(f)))[..., ::-1]
            ref = ref.transpose(2, 0, 1).astype(np.float32) / 255
            tensor, _ = pre(np.asarray(open_image(f.read_bytes(), 10**8)))
            assert tensor.shape == (1, 3, size, size)
            # same geometry, same interpolation arithmetic: the same pixels
            assert np.abs(tensor[0] - ref).max() * 255 < 1e-3


def test_preprocess_pads_with_114_and_reuses_buffer_per_size() -> None:
    pre = Preprocessor(64, 64)
    wide = np.full((20, 64, 3), 255, np.uint8)
    t, lb = pre(wide)
    assert (lb.top, lb.new_h) == (22, 20)
    assert np.allclose(t[0, :, : lb.top], 114 / 255)
    assert np.allclose(t[0, :, lb.top : lb.top + lb.new_h], 1.0)
    tall = np.zeros((64, 16, 3), np.uint8)  # new size: padding must be repainted, not left over
    t2, lb2 = pre(tall)
    assert np.allclose(t2[0, :, :, : lb2.left], 114 / 255)
    assert np.allclose(t2[0, :, :, lb2.left : lb2.left + lb2.new_w], 0.0)


@pytest.mark.parametrize(("w", "h", "nw", "nh"), [(450, 300, 320, 213), (300, 450, 277, 416), (1000, 37, 640, 24)])
def test_resize_is_bit_exact_with_opencv_when_shrinking(w: int, h: int, nw: int, nh: int) -> None:
    cv2 = pytest.importorskip("cv2", reason="OpenCV is the reference (dev venv)")
    rgb = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    got = _Resizer(w, h, nw, nh)(rgb)
    assert got.shape == ref.shape
    assert np.array_equal(got, ref)


def _cv2_letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """The reference tensor: Ultralytics' LetterBox (OpenCV) on the same pixels, RGB, CHW, /255."""
    from ultralytics.data.augment import LetterBox

    ref = LetterBox((size, size), auto=False)(image=np.ascontiguousarray(rgb[..., ::-1]))[..., ::-1]
    return ref.transpose(2, 0, 1).astype(np.float32) / 255


def test_grey_frames_take_the_one_channel_path_and_keep_the_same_pixels() -> None:
    pytest.importorskip("cv2", reason="OpenCV is the reference (dev venv)")
    grey = np.random.default_rng(1).integers(0, 256, (300, 450), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert is_grey(rgb)
    tensor, _ = Preprocessor(320, 320)(rgb)
    assert np.array_equal(tensor[0], _cv2_letterbox(rgb, 320))


def test_a_colour_frame_that_starts_grey_takes_the_colour_path() -> None:
    pytest.importorskip("cv2", reason="OpenCV is the reference (dev venv)")
    grey = np.random.default_rng(2).integers(0, 256, (300, 450), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[200, 300] = (255, 0, 0)  # one red pixel far from the first row
    assert not is_grey(rgb)
    pre = Preprocessor(320, 320)
    pre(np.repeat(grey[:, :, None], 3, axis=2))  # a grey frame first: the next one must not reuse its path
    tensor, _ = pre(rgb)
    assert np.array_equal(tensor[0], _cv2_letterbox(rgb, 320))
    assert not np.array_equal(tensor[0, 0], tensor[0, 1])  # the red pixel survives in R only


def _jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG")
    return buf.getvalue()


def test_open_image_refuses_bad_input() -> None:
    good = _jpeg(320, 240)
    assert open_image(good, 10**6).size == (320, 240)
    with pytest.raises(ImageRejected, match="empty"):
        open_image(b"", 10**6)
    with pytest.raises(ImageRejected, match="unsupported format: a PDF file"):
        open_image(b"%PDF-1.4 definitely not a picture", 10**6)
    with pytest.raises(ImageRejected, match="not a decodable image"):
        open_image(b"\x89PNG\r\n\x1a\n but no chunks after the signature", 10**6)
    with pytest.raises(ImageRejected, match="incomplete or corrupt"):
        open_image(good[: len(good) // 2], 10**6)
    with pytest.raises(ImageRejected, match="too large"):
        open_image(good, 320 * 240 - 1)


def test_open_image_converts_grey_and_rgba_to_rgb() -> None:
    for mode in ("L", "RGBA", "P"):
        buf = io.BytesIO()
        Image.new(mode, (8, 6)).save(buf, format="PNG")
        assert open_image(buf.getvalue(), 10**6).mode == "RGB"


OTHER_FORMATS = {"EPS": "EPS/PostScript", "TIFF": "TIFF", "BMP": "BMP", "GIF": "GIF", "WEBP": "RIFF/WebP"}


def test_only_the_jpeg_and_png_decoders_ever_see_frame_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames in other formats are refused by content, and no other Pillow plugin (EPS would start Ghostscript)
    is even asked to identify them."""
    Image.init()
    consulted: list[str] = []
    for name, (factory, accept) in list(Image.OPEN.items()):
        if name in ("JPEG", "PNG"):
            continue

        def spy(fp, filename=None, *args, _name=name, _factory=factory):
            consulted.append(_name)
            return _factory(fp, filename, *args)

        monkeypatch.setitem(Image.OPEN, name, (spy, accept))
    for fmt, what in OTHER_FORMATS.items():
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 90, 90)).save(buf, format=fmt)
        with pytest.raises(ImageRejected, match=f"unsupported format: an? {what}"):
            open_image(buf.getvalue(), 10**6)
    # JPEG magic with a PostScript body: the JPEG decoder refuses it, nothing else is tried
    with pytest.raises(ImageRejected, match="not a decodable image"):
        open_image(b"\xff\xd8\xff%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n", 10**6)
    assert consulted == []
    assert open_image(_jpeg(64, 48), 10**6).size == (64, 48)


def test_the_edge_decodes_exactly_what_cloud_ingest_accepts() -> None:
    for fmt in ("JPEG", "PNG", *OTHER_FORMATS):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 90, 90)).save(buf, format=fmt)
        data = buf.getvalue()
        assert sniff(data) == sniff_format(data), fmt
        if sniff(data) is None:
            assert refusal(data)
            with pytest.raises(IngestRejected):
                inspect_image(data)
        else:
            assert refusal(data) is None and inspect_image(data).format == sniff(data)
