"""Decoding and NMS, checked against references computed independently (brute force, and Ultralytics' own NMS)."""

from __future__ import annotations

import numpy as np
import pytest

from loupe_edge.postprocess import box_iou, decode_yolo, match_boxes, nms


def brute_force_nms(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    """Plain-Python greedy NMS, written from the definition with no vectorisation."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    removed: set[int] = set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        for j in order:
            if j not in removed and j != i and j not in keep and iou(boxes[i], boxes[j]) > thr:
                removed.add(j)
    return keep


def random_boxes(rng: np.random.Generator, n: int, size: float = 320.0) -> np.ndarray:
    xy = rng.uniform(0, size * 0.8, (n, 2))
    wh = rng.uniform(5, size * 0.3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed: int, thr: float) -> None:
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 60)
    scores = rng.permutation(60).astype(np.float32) / 60 + 0.01  # distinct scores: a unique answer
    got = nms(boxes, scores, thr).tolist()
    assert got == brute_force_nms(boxes.tolist(), scores.tolist(), thr)


def test_nms_suppresses_only_strictly_above_threshold() -> None:
    a = [0.0, 0.0, 10.0, 10.0]
    b = [0.0, 0.0, 10.0, 5.0]  # IoU(a, b) = 0.5 exactly
    boxes = np.array([a, b], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def yolo_output(rng: np.random.Generator, n: int, nc: int, size: float = 320.0) -> np.ndarray:
    xyxy = random_boxes(rng, n, size)
    cxcy = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    wh = xyxy[:, 2:] - xyxy[:, :2]
    scores = rng.uniform(0, 1, (n, nc)) ** 3  # mostly low, some high, like a real head
    return np.concatenate([cxcy, wh, scores], axis=1).T[None].astype(np.float32)


@pytest.mark.parametrize("nc", [1, 3])
@pytest.mark.parametrize("seed", range(4))
def test_decode_matches_ultralytics_nms(nc: int, seed: int) -> None:
    torch = pytest.importorskip("torch", reason="Ultralytics' NMS is the reference; it needs torch (dev venv)")
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(100 + seed)
    out = yolo_output(rng, 400, nc)
    ref = non_max_suppression(torch.from_numpy(out.copy()), conf_thres=0.25, iou_thres=0.7, max_det=300)[0].numpy()
    got = decode_yolo(out, 0.25, 0.7, 300)
    assert got.shape == ref.shape and got.shape[0] > 5
    order_ref = np.lexsort((ref[:, 0], -ref[:, 4]))
    order_got = np.lexsort((got[:, 0], -got[:, 4]))
    np.testing.assert_allclose(got[order_got], ref[order_ref], rtol=1e-5, atol=1e-3)


def test_decode_is_class_aware() -> None:
    # two identical boxes of different classes both survive; same class: only the better one
    col = lambda cls_scores: [50.0, 50.0, 20.0, 20.0, *cls_scores]  # noqa: E731
    out = np.array([col([0.9, 0.1]), col([0.1, 0.8]), col([0.7, 0.0])], dtype=np.float32).T[None]
    got = decode_yolo(out, 0.25, 0.5)
    assert sorted(got[:, 5].tolist()) == [0.0, 1.0]
    assert sorted(got[:, 4].tolist()) == pytest.approx([0.8, 0.9])
    np.testing.assert_allclose(got[0, :4], [40, 40, 60, 60])


def test_decode_threshold_is_strict_and_empty_output_is_empty() -> None:
    out = np.array([[10, 10, 4, 4, 0.25], [30, 30, 4, 4, 0.2501]], dtype=np.float32).T[None]
    got = decode_yolo(out, 0.25, 0.7)
    assert got.shape == (1, 6) and got[0, 4] == pytest.approx(0.2501)
    assert decode_yolo(out, 0.9, 0.7).shape == (0, 6)


def test_decode_respects_max_det() -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 3000, (500, 2))  # far apart: nothing suppressed
    out = np.concatenate([xy, np.full((500, 2), 4.0), rng.uniform(0.5, 1, (500, 1))], axis=1).T[None]
    got = decode_yolo(out.astype(np.float32), 0.25, 0.7, max_det=50)
    assert got.shape[0] == 50
    assert got[:, 4].min() >= np.sort(out[0, 4])[-50] - 1e-6


def test_decode_end_to_end_output() -> None:
    det = np.zeros((300, 6), dtype=np.float32)
    det[0] = [1, 2, 3, 4, 0.9, 0]
    det[1] = [5, 6, 7, 8, 0.1, 0]
    got = decode_yolo(det[None], 0.25, 0.7)
    np.testing.assert_allclose(got, det[:1])


def test_decode_rejects_unknown_shapes() -> None:
    with pytest.raises(ValueError):
        decode_yolo(np.zeros((1, 3, 10), dtype=np.float32), 0.25, 0.7)


def test_box_iou_and_matching() -> None:
    a = np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 0]], dtype=np.float32)
    b = np.array([[0, 0, 10, 9, 0.89, 0], [20, 20, 30, 30, 0.8, 1]], dtype=np.float32)
    iou = box_iou(a[:, :4], b[:, :4])
    assert iou[0, 0] == pytest.approx(0.9)
    assert iou[0, 1] == 0.0
    assert match_boxes(a, b, 0.5) == 1  # second pair differs in class
    assert match_boxes(a, b, 0.95) == 0
    assert match_boxes(a, b, 0.5, conf_tol=0.005) == 0  # scores 0.9 vs 0.89
    assert match_boxes(a, a, 0.99, conf_tol=0.0) == 2
