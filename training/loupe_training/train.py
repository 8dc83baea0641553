"""train: YOLOv8 on a prepared dataset, offline, with per-epoch progress lines and a divergence check."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from loupe_training.offline import prepare_offline, quiet_settings
from loupe_training.prepare import load_prepared, runtime_yaml
from loupe_training.stopping import install, rule_for


class TrainingError(RuntimeError):
    """Training could not produce a usable model (the reason is in the message)."""


@dataclass
class HyperParams:
    model: str = "yolov8n.yaml"
    imgsz: int = 320  # = template.yaml's TrainingImageSize
    epochs: int = 60  # = template.yaml's TrainingEpochs (35 measured under-trained)
    batch: int = 16
    patience: int = 15
    # early stopping of a run from scratch (loupe_training.stopping): no stop before min_epochs (-1: half the epochs)
    # and patience counted from the first epoch whose val mAP50 reaches noise_floor (-1: NOISE_FLOOR_MAP50). A warm
    # start keeps Ultralytics' rule (patience from the best epoch) unless these are set
    min_epochs: int = -1
    noise_floor: float = -1.0
    lr0: float = 0.01
    warm_lr0: float = 0.001  # the learning rate of a warm start (AdamW, no warmup; see train())
    seed: int = 0
    # 0: the epochs decide. > 0: train for this many seconds (Ultralytics' ``time``: after every epoch the epoch
    # count and the learning-rate schedule are re-planned to end inside the budget; ``epochs`` is then ignored)
    time_budget_s: float = 0.0
    workers: int = -1  # dataloader processes; -1: the host's cores (at most 8) on a GPU. Ultralytics uses 0 on CPU
    threads: int = 0  # torch intra-op threads on CPU; 0: every core (data loading runs in the same process on CPU)
    amp: bool = True  # mixed precision where the device supports it (CUDA); ignored on CPU
    deterministic: bool = False  # deterministic CUDA kernels (slower); seeds are always set
    allow_download: bool = False
    device: str = "auto"  # auto: first GPU when there is one, else cpu
    stop_at_val_map50: float = 0.0  # > 0: stop as soon as val mAP50 reaches it (benchmarks, quick retrains)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> HyperParams:
        """From SageMaker's SM_HPS / CLI values (strings are converted; unknown keys are an error)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)} (known: {', '.join(known)})")
        kwargs: dict[str, Any] = {}
        defaults = cls()
        for key, raw in values.items():
            kind = type(getattr(defaults, key))
            try:
                if kind is bool:
                    truthy = str(raw).strip().lower() in ("1", "true", "yes")
                    kwargs[key] = raw if isinstance(raw, bool) else truthy
                else:
                    kwargs[key] = kind(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"hyperparameter {key}={raw!r} is not a {kind.__name__}") from exc
        hps = cls(**kwargs)
        if hps.epochs < 1 or hps.batch < 1 or hps.imgsz < 32 or hps.imgsz % 32:
            raise ValueError(f"invalid hyperparameters: epochs/batch >= 1 and imgsz a multiple of 32 ({hps})")
        return hps

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    weights: Path
    epochs_run: int
    seconds: float
    val_metrics: dict[str, float]
    history: list[dict[str, Any]]
    stopping: dict[str, Any] = field(default_factory=dict)  # StopRule.describe(): the rule and what it did


def check_finite_losses(losses: dict[str, float], epoch: int) -> None:
    """Raise TrainingError when a loss is NaN/Inf (a diverging run)."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(float(v))}
    if bad:
        raise TrainingError(
            f"training diverged at epoch {epoch}: non-finite loss {bad}; lower lr0, check the labels, "
            "or set amp=false on a GPU"
        )


def _float(v: Any) -> float:
    try:
        return float(v.item() if hasattr(v, "item") else v)
    except (TypeError, ValueError):
        return float("nan")


class ProgressReporter:
    """Ultralytics callbacks that log one line per epoch and keep a progress JSON file up to date."""

    def __init__(
        self, log: Callable[[str], None], progress_file: Path | None, total_epochs: int, stop_at: float = 0.0
    ) -> None:
        self.log = log
        self.stop_at = stop_at
        self.progress_file = progress_file
        self.total = total_epochs
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def _write(self, state: dict[str, Any]) -> None:
        if self.progress_file is None:
            return
        tmp = self.progress_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.progress_file)

    def on_train_start(self, trainer: Any) -> None:
        self.total = int(trainer.epochs)
        done = int(getattr(trainer, "start_epoch", 0) or 0)  # > 0 when resumed from a checkpoint
        self._write({"status": "training", "epoch": done, "epochs": self.total, "history": [], "resumed_after": done})
        args = trainer.args
        resumed = f", resumed after epoch {done}" if done else ""
        import torch

        where = (
            f"{trainer.device}, {torch.get_num_threads()} CPU threads"
            if trainer.device.type == "cpu"
            else f"{trainer.device}, AMP {'on' if bool(trainer.amp) else 'off'}, {args.workers} dataloader workers"
        )
        span = (
            f"a {args.time * 3600:.0f} s budget (epochs re-planned after each)"
            if getattr(args, "time", None)
            else f"{self.total} epochs"
        )
        self.log(f"training started: {span}, imgsz {args.imgsz}, batch {trainer.batch_size} on {where}{resumed}")

    def on_train_epoch_end(self, trainer: Any) -> None:
        items = trainer.label_loss_items(trainer.tloss, prefix="train") or {}
        losses = {k: _float(v) for k, v in items.items()}
        check_finite_losses(losses, trainer.epoch + 1)

    def on_fit_epoch_end(self, trainer: Any) -> None:
        if trainer.epoch + 1 > self.total or (self.history and trainer.epoch + 1 <= self.history[-1]["epoch"]):
            return  # the final validation of best.pt calls this hook again
        losses = trainer.label_loss_items(trainer.tloss, prefix="train") or {}
        metrics = trainer.metrics or {}
        row = {
            "epoch": trainer.epoch + 1,
            "epochs": self.total,
            "box_loss": _float(losses.get("train/box_loss")),
            "cls_loss": _float(losses.get("train/cls_loss")),
            "dfl_loss": _float(losses.get("train/dfl_loss")),
            "val_map50": _float(metrics.get("metrics/mAP50(B)", 0.0)),
            "val_map50_95": _float(metrics.get("metrics/mAP50-95(B)", 0.0)),
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        self.history.append(row)
        self.log(
            "epoch {epoch}/{epochs} box_loss={box_loss:.4f} cls_loss={cls_loss:.4f} dfl_loss={dfl_loss:.4f} "
            "val_mAP50={val_map50:.4f} val_mAP50-95={val_map50_95:.4f} elapsed={elapsed_s:.0f}s".format(**row)
        )
        state = {"status": "training", "epoch": row["epoch"], "epochs": self.total, "history": self.history}
        self._write(state)
        if self.stop_at > 0 and row["val_map50"] >= self.stop_at:
            self.log(f"val mAP50 {row['val_map50']:.4f} reached {self.stop_at}: stopping")
            trainer.stop = True

    def attach(self, model: Any) -> None:
        model.add_callback("on_train_start", self.on_train_start)
        model.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)


CHECKPOINT_RUN = "run"  # <checkpoint dir>/run/weights/last.pt is Ultralytics' own resumable checkpoint
CHECKPOINT_MARKER = "checkpoint.json"  # written after each epoch's last.pt is complete


class CheckpointMarker:
    """Writes ``checkpoint.json`` ({"epoch", "epochs", "last"}) once an epoch's ``last.pt`` is on disk.

    Ultralytics saves ``last.pt`` every epoch (``on_model_save`` runs right after); the marker says which epoch
    that file holds and that it is complete, for logs and for whoever interrupts the job (a spot reclaim in tests).
    """

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.root = root
        self.log = log

    def on_model_save(self, trainer: Any) -> None:
        epoch = int(trainer.epoch) + 1
        state = {"epoch": epoch, "epochs": int(trainer.epochs), "last": str(Path(trainer.last).relative_to(self.root))}
        tmp = self.root / (CHECKPOINT_MARKER + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.root / CHECKPOINT_MARKER)
        self.log(f"checkpoint saved: epoch {epoch}/{state['epochs']} in {self.root}")


def checkpoint_source_problem(uri: str, execution_id: str) -> str:
    """Why a training job of pipeline execution ``execution_id`` may not load checkpoints from ``uri``; "" if it may.

    A checkpoint (Ultralytics' last.pt) is a pickle: loading it runs whatever it holds. The pipeline gives each
    execution its own prefix (``.../pipeline/checkpoints/<execution id>``, CheckpointConfig) and tells the job that
    prefix and its execution id (LOUPE_CHECKPOINT_S3_URI, LOUPE_PIPELINE_EXECUTION_ID); a prefix that is not the
    execution's own (a shared one, another execution's) could hand the job a file someone else wrote.
    """
    if not execution_id:
        return "the job was not told its pipeline execution id (LOUPE_PIPELINE_EXECUTION_ID)"
    if not uri:
        return "the job was not told its checkpoint prefix (LOUPE_CHECKPOINT_S3_URI)"
    if not uri.startswith("s3://") or uri.rstrip("/").rsplit("/", 1)[-1] != execution_id:
        return f"the checkpoint prefix {uri} is not this execution's own (it must end with /{execution_id})"
    return ""


def resumable_checkpoint(checkpoint_dir: Path) -> tuple[Path | None, int, bool]:
    """(last.pt, epochs done, finished) of an earlier attempt of this job in ``checkpoint_dir``; (None, 0, False)."""
    last = checkpoint_dir / CHECKPOINT_RUN / "weights" / "last.pt"
    if not last.is_file():
        return None, 0, False
    import torch

    try:
        ckpt = torch.load(str(last), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a torn file from a reclaimed instance: start over, say so
        raise TrainingError(
            f"checkpoint {last} is unreadable ({exc}); delete the checkpoint prefix to start over"
        ) from exc
    epoch = int(ckpt.get("epoch", -1))
    if epoch < 0:  # Ultralytics marks a completed run's stripped checkpoint with epoch -1
        return last, 0, True
    return last, epoch + 1, False


def find_weights(channel: str | Path | None) -> Path | None:
    """The ``.pt`` file in a weights channel (folder) or the file itself; None when absent or empty."""
    if not channel:
        return None
    path = Path(channel)
    if path.is_file() and path.suffix == ".pt":
        return path
    if path.is_dir():
        found = sorted(path.rglob("*.pt"))
        return found[0] if found else None
    return None


def _trust_amp(log: Callable[[str], None]) -> None:
    """Let Ultralytics use AMP on CUDA without its online check.

    Ultralytics' ``check_amp`` downloads yolo26n.pt to compare FP32 and AMP outputs; Loupe trains offline, where
    that check cannot run. AMP is kept: a run that AMP breaks shows NaN/Inf losses, which
    :func:`check_finite_losses` turns into an error that names the fix (``amp=false``).
    """
    from ultralytics.engine import trainer as ultralytics_trainer

    ultralytics_trainer.check_amp = lambda model: True  # type: ignore[assignment]
    log("AMP on (CUDA); Ultralytics' online AMP check skipped offline: set amp=false if the losses diverge")


def train(
    prepared_dir: str | Path,
    out_dir: str | Path,
    hps: HyperParams,
    weights: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress_file: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Train and return the best checkpoint; raises TrainingError on divergence or an unusable result.

    With ``checkpoint_dir`` (SageMaker's ``/opt/ml/checkpoints``, synced to the job's CheckpointConfig S3 URI) the
    run lives there and ``last.pt`` is saved every epoch; when an earlier attempt of the same job left one (a spot
    interruption restarts the job with the same checkpoint prefix), training resumes after its last epoch.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare_offline(out / ".yolo-config")
    if not hps.allow_download:
        os.environ["YOLO_OFFLINE"] = "1"
    import torch

    # Ultralytics trains on CPU with workers=0 (data loading in this process) and min(8, cores - 1) torch threads:
    # one core of two. Every core: benchmarks/training_recipes.py measured 14.5 s an epoch with one thread, ~8.5 with
    # two (yolov8n @320, 135 images, 2-core CPU)
    threads = hps.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = hps.device
    if device == "auto":
        device = "0" if torch.cuda.is_available() else "cpu"
    on_gpu = device != "cpu"
    workers = hps.workers if hps.workers >= 0 else min(8, os.cpu_count() or 1)
    if on_gpu and hps.amp and not hps.allow_download:
        _trust_amp(log)
    from ultralytics import YOLO

    quiet_settings()
    prepared = load_prepared(prepared_dir)
    data_yaml = runtime_yaml(prepared, out / "work")
    project = out
    resume_from, done, finished = None, 0, False
    if checkpoint_dir is not None:
        project = Path(checkpoint_dir).resolve()
        project.mkdir(parents=True, exist_ok=True)
        resume_from, done, finished = resumable_checkpoint(project)
    if finished and resume_from is not None:
        best = project / CHECKPOINT_RUN / "weights" / "best.pt"
        log(f"checkpoint {resume_from} is a finished run: using {best.name if best.is_file() else 'last.pt'}")
        return TrainResult(best if best.is_file() else resume_from, 0, 0.0, {}, [])
    start = find_weights(weights)
    if resume_from is not None:
        log(f"resuming from checkpoint {resume_from} ({done} epoch(s) done)")
        model = YOLO(str(resume_from))
    elif start is not None:
        log(f"warm start from {start}")
        model = YOLO(str(start))
    else:
        model_cfg = hps.model
        if not model_cfg.endswith(".yaml") and not hps.allow_download:
            raise TrainingError(
                f"model {model_cfg!r} would be downloaded; give weights as an input channel / --weights, "
                "use a model yaml (e.g. yolov8n.yaml), or set allow_download"
            )
        log(f"training from {model_cfg} (no starting weights)")
        model = YOLO(model_cfg)
    reporter = ProgressReporter(
        log, Path(progress_file) if progress_file else None, hps.epochs, stop_at=hps.stop_at_val_map50
    )
    reporter.attach(model)
    stopper = rule_for(start is not None, hps.epochs, hps.patience, hps.min_epochs, hps.noise_floor)
    model.add_callback("on_pretrain_routine_end", install(stopper))
    if stopper.min_epochs or stopper.noise_floor:
        log(
            f"early stopping: patience {hps.patience} counted from the first epoch with val mAP50 >= "
            f"{stopper.noise_floor}, never before epoch {stopper.min_epochs}"
        )
    if not on_gpu:
        # Ultralytics' select_device() resets torch's threads to min(8, cores - 1) on CPU: set ours once it has run
        model.add_callback("on_pretrain_routine_start", lambda _trainer: torch.set_num_threads(threads))
    if checkpoint_dir is not None:
        model.add_callback("on_model_save", CheckpointMarker(project, log).on_model_save)
    # A warm start fine-tunes: Ultralytics' "auto" optimizer ignores lr0 and its warmup (bias lr 0.1 for >= 100
    # iterations) covers a whole small fine-tune and undoes what the champion learned. AdamW at a low rate without
    # warmup keeps it (measured on the synthetic drift: +0.19 phase-2 mAP50 against +0.05 with the defaults).
    tuning = {"optimizer": "AdamW", "lr0": hps.warm_lr0, "warmup_epochs": 0} if start is not None else {"lr0": hps.lr0}
    started = time.monotonic()
    try:
        if resume_from is not None:
            # Ultralytics takes every other setting (epochs, lr, seed, project) from the checkpoint's own args
            model.train(resume=True, data=str(data_yaml), workers=workers, device=device, plots=False)
        else:
            model.train(
                data=str(data_yaml),
                epochs=hps.epochs,
                imgsz=hps.imgsz,
                batch=hps.batch,
                patience=hps.patience,
                **tuning,
                seed=hps.seed,
                deterministic=hps.deterministic,
                workers=workers,
                **({"time": hps.time_budget_s / 3600.0} if hps.time_budget_s > 0 else {}),
                device=device,
                project=str(project),
                name=CHECKPOINT_RUN,
                exist_ok=True,
                plots=False,
                amp=hps.amp,
                verbose=False,
                val=True,
            )
    except TrainingError:
        raise
    except RuntimeError as exc:
        if "NaN" in str(exc) or "nan" in str(exc):
            raise TrainingError(f"training diverged: {exc}") from exc
        raise
    seconds = time.monotonic() - started
    best = project / CHECKPOINT_RUN / "weights" / "best.pt"
    if not best.is_file():
        best = project / CHECKPOINT_RUN / "weights" / "last.pt"
    if not best.is_file():
        raise TrainingError("training produced no checkpoint")
    trainer: Any = model.trainer  # set by train()
    val_metrics = {k: _float(v) for k, v in (trainer.metrics or {}).items()}
    if reporter.history:
        check_finite_losses({"box_loss": reporter.history[-1]["box_loss"]}, reporter.history[-1]["epoch"])
    stopping = stopper.describe()
    if stopping["stopped_early_at"]:
        log(
            f"stopped early at epoch {stopping['stopped_early_at']} of {hps.epochs}: no val mAP50-95 gain in "
            f"{hps.patience} epochs counted from epoch {stopping['counted_from']} ({stopping['rule']})"
        )
    log(f"training done in {seconds:.0f}s, best checkpoint {best}")
    return TrainResult(best, len(reporter.history), seconds, val_metrics, reporter.history, stopping)
