"""The uncertainty band of a model (loupe.uncertainty.calibrate), its card entry, and the frames the training
side reads from Ultralytics' per-image validation records (loupe_training.calibrate)."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.uncertainty import DEFAULT_HIGH, DEFAULT_LOW, Frame, calibrate, settings_from_card
from loupe_training.calibrate import frames_from_stats


def frames(*spec: tuple[float, bool], boxes: int = 1) -> list[Frame]:
    return [Frame(top, ok, boxes) for top, ok in spec]


def test_the_band_reaches_just_over_the_most_confident_mistake() -> None:
    # best guesses right from 0.5 up; wrong at 0.4 and 0.2: every frame under 0.4 and 0.4 itself are uncertain
    held_out = frames(*[(0.9, True)] * 4, (0.6, True), (0.5, True), (0.4, False), (0.3, True), (0.2, False))
    held_out += frames((0.0, False))  # nothing found: a pass, never in the band
    band = calibrate(held_out, max_share=0.5)
    assert (band.low, band.high) == (0.05, 0.401)
    assert band.share == pytest.approx(0.3, abs=1e-4) and band.frames == 10 and band.method == "calibrated"
    assert band.settings() == {"bandLow": 0.05, "bandHigh": 0.401, "criterion": "top"}


def test_a_weak_model_keeps_only_its_least_confident_minority_inside() -> None:
    # wrong up to 0.32: every image would be inside; a third at most stays, the least confident ones
    weak = frames(*[(0.1 + 0.02 * i, i % 2 == 0) for i in range(12)])
    band = calibrate(weak, max_share=1 / 3)
    inside = [f.top for f in weak if band.low <= f.top < band.high]
    assert len(inside) == 4 and sorted(inside) == sorted(f.top for f in weak)[:4]
    assert band.share == pytest.approx(4 / 12, abs=1e-4)


def test_one_confident_mistake_does_not_open_the_band_to_every_frame() -> None:
    held_out = frames((0.95, False), *[(0.9, True)] * 7, (0.3, True), (0.2, False), (0.1, True), (0.07, True))
    band = calibrate(held_out, max_share=0.25)
    assert band.share <= 0.25 and [f.top for f in held_out if band.low <= f.top < band.high] == [0.2, 0.1, 0.07]


def test_clean_images_raise_the_bottom_of_the_band_over_their_false_alarms() -> None:
    scratched = frames(*[(0.8, True)] * 8, (0.35, False), (0.3, False))
    clean = [Frame(0.2, False, 0), Frame(0.12, False, 0), Frame(0.0, False, 0)]
    band = calibrate(scratched + clean, max_share=0.5)
    assert band.low == 0.201  # a frame no more confident than a clean image (0.2) is a pass
    assert band.high == 0.351 and band.share == pytest.approx(2 / 13, abs=1e-4)


def test_a_model_without_mistakes_gets_a_band_that_holds_nothing() -> None:
    band = calibrate(frames(*[(0.9, True)] * 10, *[(0.3, True)] * 10))
    assert band.low < band.high and band.share == 0.0


def test_too_few_images_give_the_recipe_default() -> None:
    band = calibrate(frames((0.5, True), (0.3, False)))
    assert (band.low, band.high, band.criterion) == (DEFAULT_LOW, DEFAULT_HIGH, "any")
    assert band.method.startswith("default: 2 held-out images")


def test_the_card_entry_round_trips_and_bad_entries_are_refused() -> None:
    band = calibrate(frames(*[(0.9, True)] * 8, (0.3, False), (0.2, False)))
    assert settings_from_card({"uncertainty_band": band.card()}) == band.settings()
    assert settings_from_card({}) is None
    assert settings_from_card({"uncertainty_band": {"bandLow": 0.6, "bandHigh": 0.2}}) is None
    assert settings_from_card({"uncertainty_band": {"bandLow": "x", "bandHigh": 0.2}}) is None
    assert settings_from_card({"uncertainty_band": {"bandLow": 0.1, "bandHigh": 0.2, "criterion": "max"}}) is None
    # a card written before the criterion existed meant the edge's default rule
    assert settings_from_card({"uncertainty_band": {"bandLow": 0.1, "bandHigh": 0.2}})["criterion"] == "any"


def test_frames_come_from_the_validators_per_image_records() -> None:
    tp = np.zeros((3, 10), dtype=bool)
    tp[1, 0] = True  # the 0.7 detection matches a labeled box at IoU 0.5
    stats = [
        {"conf": np.array([0.2, 0.7, 0.1]), "tp": tp, "target_cls": np.array([0.0, 0.0]), "im_name": "a.jpg"},
        {"conf": np.zeros(0), "tp": np.zeros((0, 10), dtype=bool), "target_cls": np.zeros(0), "im_name": "b.jpg"},
        {"conf": np.array([0.4]), "tp": np.zeros((1, 10), dtype=bool), "target_cls": np.array([0.0])},
    ]
    assert frames_from_stats(stats) == [
        Frame(pytest.approx(0.7), True, 2),
        Frame(0.0, False, 0),
        Frame(pytest.approx(0.4), False, 1),
    ]
