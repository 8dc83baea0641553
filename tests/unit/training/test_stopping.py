"""Early stopping of a run from scratch (issue 22) and the plain-words diagnosis of a weak model."""

from __future__ import annotations

import pytest

from loupe_training import diagnosis as dg
from loupe_training.jobs import gate_decision
from loupe_training.stopping import NOISE_FLOOR_MAP50, StopRule, default_min_epochs, install, rule_for

# The issue's run (from scratch, 80 epochs, patience 15): val mAP50 a few thousandths that goes up and down for the
# first ~20 epochs, a noise spike at epoch 14 that stays the best mAP50-95 until epoch 29, then a climb that is
# still going at epoch 29 (0.06). Ultralytics stopped it at epoch 29.
ISSUE_MAP50 = [
    0.0, 0.001, 0.0, 0.003, 0.001, 0.0, 0.002, 0.004, 0.001, 0.0,
    0.003, 0.002, 0.005, 0.012, 0.004, 0.002, 0.006, 0.003, 0.004, 0.007,
    0.008, 0.01, 0.013, 0.018, 0.024, 0.031, 0.04, 0.05, 0.06,
]  # fmt: skip
ISSUE_FITNESS = [m * 0.35 for m in ISSUE_MAP50[:13]] + [
    0.0075,  # epoch 14, the spike: no later epoch beats its mAP50-95 before the stop
    0.0014, 0.0007, 0.0021, 0.001, 0.0014, 0.0025, 0.0028, 0.0035, 0.0045, 0.005,
    0.0055, 0.006, 0.0068, 0.0072, 0.0074,
]  # fmt: skip


def _run(rule, map50, fitness) -> int | None:
    """Feeds the sequences as Ultralytics' loop does; returns the epoch the rule stopped at (None: ran them all)."""
    for epoch, (m, f) in enumerate(zip(map50, fitness, strict=True), 1):
        if rule(epoch, f, m):
            return epoch
    return None


def _ultralytics(patience: int):
    from ultralytics.utils.torch_utils import EarlyStopping

    stopper = EarlyStopping(patience=patience)
    return lambda epoch, fitness, _map50: stopper(epoch, fitness)


def test_the_issue_run_is_stopped_by_ultralytics_and_not_by_the_from_scratch_rule():
    assert _run(_ultralytics(15), ISSUE_MAP50, ISSUE_FITNESS) == 29  # what happened in the issue
    rule = rule_for(warm_start=False, epochs=80, patience=15)
    assert _run(rule, ISSUE_MAP50, ISSUE_FITNESS) is None
    assert rule.moved_epoch == 28  # val mAP50 first reached the noise floor (0.05) at epoch 28


def test_a_warm_start_keeps_ultralytics_rule():
    rule = rule_for(warm_start=True, epochs=80, patience=15)
    assert (rule.min_epochs, rule.noise_floor) == (0, 0.0)
    assert _run(rule, ISSUE_MAP50, ISSUE_FITNESS) == _run(_ultralytics(15), ISSUE_MAP50, ISSUE_FITNESS) == 29
    assert rule.stopped_at == 29 and rule.describe()["counted_from"] == 14


@pytest.mark.parametrize(
    ("map50", "fitness"),
    [
        (
            [0.3, 0.5, 0.5, 0.49, 0.5, 0.48, 0.5, 0.5, 0.47, 0.5],
            [0.2, 0.3, 0.29, 0.28, 0.3, 0.27, 0.3, 0.29, 0.25, 0.3],
        ),
        ([0.0, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4], [0.0, 0.1, 0.2, 0.2, 0.19, 0.18, 0.2, 0.2, 0.2, 0.2]),
    ],
)
def test_the_rule_agrees_with_ultralytics_when_floor_and_minimum_are_zero(map50, fitness):
    ours = _run(StopRule(patience=3), map50, fitness)
    assert ours == _run(_ultralytics(3), map50, fitness)
    assert ours is not None


def test_no_stop_before_min_epochs_even_after_validation_moved():
    map50 = [0.1] * 40  # moved at epoch 1, then flat: patience 5 alone would stop at epoch 6
    fitness = [0.05] * 40
    rule = StopRule(patience=5, min_epochs=30, noise_floor=NOISE_FLOOR_MAP50)
    assert _run(rule, map50, fitness) == 30
    assert rule.describe()["stopped_early_at"] == 30


def test_patience_counts_from_the_epoch_validation_first_moves():
    # a noisy start whose best mAP50-95 is epoch 2; validation moves above the floor at epoch 20 and then stalls
    map50 = [0.01, 0.03, 0.0, 0.02] + [0.01] * 15 + [0.06] * 20
    fitness = [0.004, 0.012, 0.0, 0.008] + [0.004] * 15 + [0.011] * 20
    rule = StopRule(patience=10, min_epochs=0, noise_floor=0.05)
    assert _run(rule, map50, fitness) == 30  # 20 + 10, not 2 + 10
    assert rule.describe()["counted_from"] == 20


def test_validation_that_never_moves_never_stops_the_run():
    rule = rule_for(warm_start=False, epochs=60, patience=15)
    assert _run(rule, [0.01] * 60, [0.003] * 60) is None and rule.moved_epoch is None


def test_default_minimum_is_half_the_epochs_but_at_least_patience():
    assert default_min_epochs(80, 15) == 40
    assert default_min_epochs(20, 15) == 15
    assert default_min_epochs(10, 15) == 10


def test_possible_stop_asks_ultralytics_for_validation_only_when_a_stop_can_come():
    rule = StopRule(patience=3, min_epochs=10, noise_floor=0.05)
    for epoch in range(1, 9):
        rule(epoch, 0.1, 0.2)
        assert not rule.possible_stop  # before epoch 9 the next epoch cannot stop the run
    rule(9, 0.1, 0.2)
    assert rule.possible_stop


# ------------------------------------------------------------------------------------------------ diagnosis
def _summary(history_map50, epochs, stopping=None):
    history = [{"epoch": i, "val_map50": m} for i, m in enumerate(history_map50, 1)]
    return {
        "hyperparameters": {"epochs": epochs},
        "epochs_run": len(history),
        "history": history,
        "stopping": stopping or {},
    }


def test_diagnosis_names_an_early_stop_by_its_rule_and_epoch():
    rule = rule_for(warm_start=True, epochs=80, patience=15)
    _run(rule, ISSUE_MAP50, ISSUE_FITNESS)
    found = dg.diagnose(_summary(ISSUE_MAP50, 80, rule.describe()), {"images": 300, "boxes": 700})
    signs = [f["sign"] for f in found["findings"]]
    assert signs == ["stopped_early", "not_converged"]
    assert "stopped early at epoch 29 of 80" in found["text"]
    assert "counted from epoch 14" in found["text"] and "ultralytics patience" in found["text"]
    assert "still rose over the last 5 epochs" in found["text"]
    assert "Try: raise patience" in found["text"] and "more epochs" in found["text"]


def test_diagnosis_of_too_little_data_and_a_model_that_never_learned():
    rule = rule_for(warm_start=False, epochs=20, patience=15)
    _run(rule, [0.0] * 20, [0.0] * 20)
    found = dg.diagnose(_summary([0.0] * 20, 20, rule.describe()), {"images": 18, "boxes": 25})
    assert [f["sign"] for f in found["findings"]] == ["never_learned", "small_data"]
    assert "data too small: 18 training images with 25 boxes" in found["text"]
    assert "warm-start" in found["text"] and "label more images" in found["text"]


def test_diagnosis_of_a_settled_run_says_so():
    flat = [0.1, 0.3, 0.5, 0.6, 0.62] + [0.63] * 10
    found = dg.diagnose(_summary(flat, 15), {"images": 300, "boxes": 700})
    assert found["findings"] == [] and found["text"].startswith("no sign of a training problem")


def test_diagnosis_is_clipped_and_its_short_form_is_a_valid_package_metadata_value():
    stopping = {"stopped_early_at": 3, "patience": 1, "counted_from": 2, "rule": "x" * 2000, "noise_floor_map50": 0.05}
    history = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2]
    found = dg.diagnose(_summary(history, 80, stopping), {"images": 1, "boxes": 1})
    assert len(found["text"]) <= dg.TEXT_LIMIT
    assert [f["sign"] for f in found["findings"]] == ["stopped_early", "not_converged", "never_learned", "small_data"]
    short = found["short"]
    # botocore's CustomerMetadataValue: 1-256 characters of letters, spaces, digits and _.:/=+-@
    assert 1 <= len(short) <= 256 and all(c.isalnum() or c == " " or c in "_.:/=+-@" for c in short)
    assert short.startswith("stopped early at epoch 3 of 80. not converged: val mAP50 still rising at 0.200")
    assert "Try: more patience or more epochs or more data or a warm start" in short


def test_metadata_value_replaces_what_sagemaker_refuses_and_clips():
    assert dg.metadata_value("a (b); c >= 0.5, d's") == "a b c = 0.5 d s"
    assert len(dg.metadata_value("word " * 100)) == dg.METADATA_LIMIT
    assert dg.metadata_value("();") == "none"


def test_train_split_size_counts_label_lines(tmp_path):
    labels = tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")
    (labels / "b.txt").write_text("")
    assert dg.train_split_size(tmp_path) == {"images": 2, "boxes": 2}


def test_the_gate_refusal_carries_the_training_diagnosis():
    ok, why = gate_decision({"map50": 0.006, "diagnosis_text": "stopped early at epoch 29 of 80"}, 0.5)
    assert not ok and "below the threshold 0.5000; training: stopped early at epoch 29 of 80" in why


class _Trainer:
    """What the installed callback touches of Ultralytics' trainer: its stopper (a resumed run's state) and metrics."""

    def __init__(self, best_fitness: float, best_epoch: int) -> None:
        from ultralytics.utils.torch_utils import EarlyStopping

        self.stopper = EarlyStopping(patience=15)
        self.stopper.best_fitness, self.stopper.best_epoch = best_fitness, best_epoch
        self.metrics: dict[str, float] = {}


def test_installed_rule_replaces_the_trainer_stopper_and_reads_its_validation():
    rule = rule_for(warm_start=False, epochs=80, patience=15)
    trainer = _Trainer(0.0, 0)
    install(rule)(trainer)
    assert trainer.stopper is rule
    trainer.metrics = {"metrics/mAP50(B)": 0.07, "metrics/mAP50-95(B)": 0.02}
    assert rule(1, 0.02) is False and rule.moved_epoch == 1  # mAP50 read from the trainer's metrics


def test_a_resumed_run_keeps_its_best_epoch_but_not_an_early_spike_as_the_start_of_patience():
    rule = rule_for(warm_start=False, epochs=80, patience=15)
    trainer = _Trainer(0.0075, 14)  # the checkpoint's stopper state: the issue's noise spike at epoch 14
    install(rule)(trainer)
    assert (rule.best_fitness, rule.best_epoch, rule.moved_epoch) == (0.0075, 14, None)
    stops = [rule(epoch, 0.005, 0.06) for epoch in range(30, 45)]  # resumed at 30, moved at once, no better fitness
    assert rule.moved_epoch == 30 and not any(stops)
    assert rule(45, 0.005, 0.06)  # 15 epochs after the resume's first validation, past min_epochs (40)
