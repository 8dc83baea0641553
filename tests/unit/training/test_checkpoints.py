"""Which earlier attempt a restarted training job resumes from (the files Ultralytics leaves in the checkpoint dir)."""

from __future__ import annotations

import pytest

from loupe_training.train import TrainingError, resumable_checkpoint


def _last(tmp_path, payload):
    import torch

    weights = tmp_path / "run" / "weights"
    weights.mkdir(parents=True)
    torch.save(payload, weights / "last.pt")
    return weights / "last.pt"


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert resumable_checkpoint(tmp_path) == (None, 0, False)


def test_an_interrupted_run_resumes_after_its_last_saved_epoch(tmp_path):
    last = _last(tmp_path, {"epoch": 1, "model": None})  # Ultralytics stores the 0-based index of the saved epoch
    assert resumable_checkpoint(tmp_path) == (last, 2, False)


def test_a_finished_run_is_not_trained_again(tmp_path):
    last = _last(tmp_path, {"epoch": -1, "model": None})  # strip_optimizer's mark of a completed training
    assert resumable_checkpoint(tmp_path) == (last, 0, True)


def test_a_torn_checkpoint_is_a_clear_error(tmp_path):
    weights = tmp_path / "run" / "weights"
    weights.mkdir(parents=True)
    (weights / "last.pt").write_bytes(b"\x80\x02half a pickle")
    with pytest.raises(TrainingError, match="unreadable"):
        resumable_checkpoint(tmp_path)
