"""When a training run may stop early: Ultralytics' patience, made fair to a model trained from scratch.

Ultralytics' ``EarlyStopping(patience)`` stops once its fitness (val mAP50-95) has not improved for ``patience``
epochs, counted from the best epoch so far, from epoch 1. A model trained from scratch spends its first epochs at a
val mAP50 of a few thousandths that goes up and down with noise: a noise spike early on becomes "the best epoch",
and the run stops ``patience`` epochs later while the model has only just started to learn (issue 22: stopped at
epoch 29 of 80 with val mAP50 0.06 and rising, test mAP50 0.006).

:class:`StopRule` keeps Ultralytics' rule and adds two conditions for a run from scratch:

- **patience counts from when validation first moves**: the epochs before val mAP50 first reaches
  ``noise_floor`` (:data:`NOISE_FLOOR_MAP50`) never count. 0.05 is above what a detector that has not learned
  scores by chance on a small validation split (a handful of low-confidence boxes that happen to overlap a defect:
  a few thousandths to ~0.02 in the issue's run) and well below any model worth gating (MinTestMap50 0.5). A run
  that never reaches it is never stopped by patience: it runs all its epochs, and the diagnosis says it never learned.
- **no stop before ``min_epochs``**: by default half the planned epochs (:func:`default_min_epochs`). Ultralytics'
  learning rate decays linearly over the planned epochs and a from-scratch detector gains most of its mAP in the
  second half of it; stopping before half of the plan is reached judges it while its rate is still high.

A warm start (fine-tuning the champion or given weights) keeps Ultralytics' own rule: it starts from a model that
already scores, so its first epochs are not noise (``min_epochs`` 0 and ``noise_floor`` 0 give exactly that rule).

The rule is handed to Ultralytics as the trainer's ``stopper`` (the object its loop calls after each validation:
``stop |= stopper(epoch, fitness)``, reads ``possible_stop`` and saves ``best_fitness``/``best_epoch`` in
checkpoints), by :func:`install` from an ``on_pretrain_routine_end`` callback: the trainer is not rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NOISE_FLOOR_MAP50 = 0.05
MAP50_KEY = "metrics/mAP50(B)"


def default_min_epochs(epochs: int, patience: int) -> int:
    """From scratch: no early stop before half the planned epochs (and never before ``patience`` epochs)."""
    return min(epochs, max(patience, epochs // 2))


@dataclass
class StopRule:
    """Patience over Ultralytics' fitness, counted from the first epoch whose val mAP50 reaches ``noise_floor``,
    never stopping before ``min_epochs``. ``StopRule(patience, 0, 0.0)`` is Ultralytics' ``EarlyStopping``.

    Called like Ultralytics' stopper; ``map50`` gives the epoch's val mAP50 (the trainer's metrics when installed).
    """

    patience: int
    min_epochs: int = 0
    noise_floor: float = 0.0
    name: str = "ultralytics"  # which rule, for logs and the diagnosis
    map50: Callable[[], float] = lambda: 0.0
    best_fitness: float = 0.0
    best_epoch: int = 0
    moved_epoch: int | None = None  # first epoch with val mAP50 >= noise_floor
    stopped_at: int | None = None
    possible_stop: bool = False

    def __call__(self, epoch: int, fitness: float | None, map50: float | None = None) -> bool:
        if fitness is None:  # no validation this epoch (Ultralytics' val=False)
            return False
        value = self.map50() if map50 is None else map50
        if self.moved_epoch is None and value >= self.noise_floor:
            self.moved_epoch = epoch
        if fitness > self.best_fitness or self.best_fitness == 0:
            self.best_fitness, self.best_epoch = float(fitness), epoch
        if self.patience <= 0 or self.moved_epoch is None:
            self.possible_stop = False
            return False
        waited = epoch - max(self.best_epoch, self.moved_epoch)
        self.possible_stop = waited >= self.patience - 1 and epoch + 1 >= self.min_epochs
        stop = waited >= self.patience and epoch >= self.min_epochs
        if stop:
            self.stopped_at = epoch
        return stop

    def counted_from(self) -> int | None:
        """The epoch patience was counted from when the run stopped (or now)."""
        return None if self.moved_epoch is None else max(self.best_epoch, self.moved_epoch)

    def describe(self) -> dict[str, Any]:
        """What the rule was and what it did (train_summary.json's ``stopping``)."""
        return {
            "rule": self.name,
            "patience": self.patience,
            "min_epochs": self.min_epochs,
            "noise_floor_map50": self.noise_floor,
            "moved_epoch": self.moved_epoch,
            "best_epoch": self.best_epoch,
            "counted_from": self.counted_from(),
            "stopped_early_at": self.stopped_at,
        }


def rule_for(warm_start: bool, epochs: int, patience: int, min_epochs: int = -1, noise_floor: float = -1.0) -> StopRule:
    """The rule of a run: Ultralytics' for a warm start, the fair one from scratch (-1: the defaults above)."""
    if warm_start:
        return StopRule(patience, max(0, min_epochs), max(0.0, noise_floor), name="ultralytics patience (warm start)")
    return StopRule(
        patience,
        default_min_epochs(epochs, patience) if min_epochs < 0 else min_epochs,
        NOISE_FLOOR_MAP50 if noise_floor < 0 else noise_floor,
        name="from scratch: patience counted from the first val mAP50 above the noise floor, after min_epochs",
    )


def install(rule: StopRule) -> Callable[[Any], None]:
    """An ``on_pretrain_routine_end`` callback that makes ``rule`` the trainer's stopper.

    It runs after the trainer made its own ``EarlyStopping`` and, on a resumed run, loaded its state from the
    checkpoint (best fitness and epoch): that state carries over. The epoch validation first moved is not in
    Ultralytics' checkpoint: a resumed run finds it again at its first validation at or above the floor, so patience
    counts from the resume at the earliest (never from an early noise spike that happens to be the best epoch).
    """

    def on_pretrain_routine_end(trainer: Any) -> None:
        old = getattr(trainer, "stopper", None)
        if old is not None and float(getattr(old, "best_fitness", 0.0) or 0.0) > 0:
            rule.best_fitness, rule.best_epoch = float(old.best_fitness), int(old.best_epoch)
        rule.map50 = lambda: float((trainer.metrics or {}).get(MAP50_KEY, 0.0) or 0.0)
        trainer.stopper = rule

    return on_pretrain_routine_end
