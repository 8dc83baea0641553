"""Which earlier attempt a restarted training job resumes from (the files Ultralytics leaves in the checkpoint dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loupe_training.entry import train_main
from loupe_training.train import TrainingError, checkpoint_source_problem, resumable_checkpoint


def _last(tmp_path, payload):
    import torch

    weights = tmp_path / "run" / "weights"
    weights.mkdir(parents=True)
    torch.save(payload, weights / "last.pt")  # pickles the payload, as Ultralytics' checkpoints are
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


# --- a checkpoint is loaded only from the execution's own prefix -------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "execution", "problem"),
    [
        ("s3://art/pipeline/checkpoints/exec1", "exec1", ""),
        ("s3://art/pipeline/checkpoints/exec1/", "exec1", ""),
        ("s3://art/pipeline/checkpoints", "exec1", "is not this execution's own (it must end with /exec1)"),
        ("s3://art/pipeline/checkpoints/exec2", "exec1", "is not this execution's own"),
        ("s3://art/pipeline/checkpoints/exec1x", "exec1", "is not this execution's own"),
        ("s3://art/pipeline/checkpoints/exec1", "", "not told its pipeline execution id"),
        ("", "exec1", "not told its checkpoint prefix"),
    ],
)
def test_checkpoint_source(uri, execution, problem):
    got = checkpoint_source_problem(uri, execution)
    assert (problem in got and got != "") if problem else got == ""


class _RunsCode:
    """A pickle that does something when loaded (what a planted last.pt could do): it touches ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def job_env(tmp_path, monkeypatch):
    """train.py's environment under a moved /opt/ml, with a prepared dataset channel and a planted checkpoint."""
    from loupe_training.prepare import prepare
    from loupe_training.tiny import make_tiny_version

    opt = tmp_path / "opt" / "ml"
    make_tiny_version(tmp_path / "v1", count=24, size=64, seed=3)
    prepare(tmp_path / "v1", opt / "input" / "data" / "dataset")
    marker = tmp_path / "pickle-ran"
    _last(opt / "checkpoints", _RunsCode(marker))
    monkeypatch.setenv("LOUPE_OPT_ML", str(opt))
    monkeypatch.setenv("SM_CHANNEL_DATASET", str(opt / "input" / "data" / "dataset"))
    monkeypatch.setenv("SM_MODEL_DIR", str(opt / "model"))
    monkeypatch.setenv("SM_OUTPUT_DIR", str(opt / "output"))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(opt / "output" / "data"))
    monkeypatch.setenv("SM_HPS", json.dumps({"epochs": "1", "imgsz": "64"}))
    monkeypatch.delenv("SM_CHANNEL_WEIGHTS", raising=False)
    monkeypatch.setenv("LOUPE_PIPELINE_EXECUTION_ID", "exec1")
    return opt, marker


@pytest.mark.parametrize("uri", ["s3://art/pipeline/checkpoints", "s3://art/pipeline/checkpoints/other-exec", ""])
def test_a_checkpoint_from_another_prefix_is_refused_unloaded(job_env, monkeypatch, capsys, uri):
    opt, marker = job_env
    monkeypatch.setenv("LOUPE_CHECKPOINT_S3_URI", uri)
    assert train_main() == 1
    assert not marker.exists()  # the planted pickle never ran
    failure = (opt / "output" / "failure").read_text()
    assert failure.startswith(f"refusing to load the checkpoint in {opt / 'checkpoints'}: ")
    assert "error: refusing to load the checkpoint" in capsys.readouterr().out
