"""The SageMaker container entry points (``train.py`` and ``job.py`` beside this package are 3-line shims).

``train_main``: the training job (``sagemaker_program``): channels ``dataset`` (a prepared dataset) and ``weights``
(warm-start weights or a NO_WEIGHTS marker), hyperparameters from ``SM_HPS``; everything written to
``SM_MODEL_DIR`` becomes the job's model.tar.gz (best.pt, model.onnx, model_int8.onnx, train_summary.json).
The run itself lives in ``/opt/ml/checkpoints`` (last.pt every epoch) and resumes from there after a spot restart.

``job_main``: the processing jobs, ``job.py prepare|evaluate [options]``. Paths follow the processing contract
(``/opt/ml/processing/...``); ``LOUPE_OPT_ML`` moves that root (the local pipeline stand-in maps it into its
state dir). A failure prints ``error: <reason>`` and exits nonzero, so the step fails with that reason.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(os.environ.get("LOUPE_OPT_ML", "/opt/ml")) / "processing"


def log(msg: str) -> None:
    print(f"[loupe-job] {msg}", flush=True)


def _clients() -> tuple[object, object]:
    import boto3

    return boto3.client("sagemaker"), boto3.client("s3")


def cmd_prepare(args: argparse.Namespace) -> int:
    """Warm start from the champion only with weights whose digest its model card vouches for.

    - no champion: train from scratch;
    - a champion whose card carries no weights digest (registered before cards did): train from scratch, and say
      so: nothing proves those bytes are the ones that were evaluated, and a .pt is a pickle (loading it runs
      code), while a run from scratch is only slower to reach the champion's quality;
    - a card or weights that do not match their digests: the job fails (TrainingError) with the reason. That is
      evidence the bucket was written by someone else, which must stop the pipeline and be looked at, not be
      trained around.
    """
    from loupe_training.jobs import champion_weights, prepare_job

    warm = args.warm_start
    digest = ""
    s3 = None
    if warm == "champion":
        warm = ""
        if args.model_package_group:
            sagemaker, s3 = _clients()
            champ = champion_weights(sagemaker, s3, args.model_package_group, log=log)
            if champ is None:
                log("warm start: no champion, training from scratch")
            elif not champ.sha256:
                log(f"warm start refused: champion {champ.arn}: {champ.reason}; training from scratch")
            else:
                warm, digest = champ.uri, champ.sha256
                log(f"warm start: champion {champ.arn} weights {warm} (sha256 {digest[:12]} from its model card)")
        else:
            log("warm start: no model package group, training from scratch")
    prepare_job(
        Path(args.dataset),
        Path(args.out),
        weights_out=Path(args.weights_out),
        warm_start=warm,
        s3=s3,
        log=log,
        weights_sha256=digest,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from loupe_training.jobs import evaluate_job, find_champion

    champion = None
    work = Path(args.work)
    if args.model_package_group:
        sagemaker, s3 = _clients()
        champion = find_champion(sagemaker, s3, args.model_package_group, work / "champion", log=log)
    evaluate_job(
        Path(args.model),
        Path(args.dataset),
        Path(args.eval_out),
        Path(args.package_out),
        champion_model=champion["model"] if champion else None,
        champion_arn=champion["arn"] if champion else "",
        training_artifact_uri=args.training_artifact_uri,
        log=log,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="job.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dataset", default=str(ROOT / "input" / "dataset"))
    p.add_argument("--out", default=str(ROOT / "output" / "dataset"))
    p.add_argument("--weights-out", default=str(ROOT / "output" / "weights"))
    p.add_argument("--warm-start", default="champion", help="champion | none | s3://... (.pt / model.tar.gz)")
    p.add_argument("--model-package-group", default="")
    p.set_defaults(func=cmd_prepare)
    e = sub.add_parser("evaluate")
    e.add_argument("--model", default=str(ROOT / "input" / "model"))
    e.add_argument("--dataset", default=str(ROOT / "input" / "dataset"))
    e.add_argument("--eval-out", default=str(ROOT / "output" / "evaluation"))
    e.add_argument("--package-out", default=str(ROOT / "output" / "package"))
    e.add_argument("--work", default=str(ROOT / "work"))
    e.add_argument("--model-package-group", default="")
    e.add_argument("--training-artifact-uri", default="")
    e.set_defaults(func=cmd_evaluate)
    return parser


def job_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    from loupe.datasets import DatasetError
    from loupe_training.train import TrainingError

    try:
        return args.func(args)
    except (DatasetError, TrainingError, ValueError, FileNotFoundError, BotoCoreError, ClientError) as exc:
        log(f"error: {exc}")
        return 1


def train_main() -> int:
    from loupe.datasets import DatasetError
    from loupe_training.jobs import train_job
    from loupe_training.train import HyperParams, TrainingError, checkpoint_source_problem

    hps_raw = {k: v for k, v in json.loads(os.environ.get("SM_HPS", "{}")).items() if not k.startswith("sagemaker_")}
    dataset = Path(os.environ.get("SM_CHANNEL_DATASET", "/opt/ml/input/data/dataset"))
    weights = os.environ.get("SM_CHANNEL_WEIGHTS")
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_dir = Path(os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    output_dir.mkdir(parents=True, exist_ok=True)
    progress = Path(os.environ.get("LOUPE_PROGRESS_FILE") or output_dir / "progress.json")
    # CheckpointConfig.LocalPath (the pipeline sets SageMaker's default): SageMaker copies the job's checkpoint
    # prefix here before the algorithm starts and uploads what is written here while it runs, so a job restarted
    # after a spot interruption finds its last epoch (https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html)
    checkpoints: Path | None = Path(os.environ.get("LOUPE_OPT_ML", "/opt/ml")) / "checkpoints"

    def log(msg: str) -> None:
        print(f"[loupe-train] {msg}", flush=True)

    try:
        hps = HyperParams.from_mapping(hps_raw)
        # a checkpoint is loaded only from this execution's own prefix (see checkpoint_source_problem)
        problem = checkpoint_source_problem(
            os.environ.get("LOUPE_CHECKPOINT_S3_URI", ""), os.environ.get("LOUPE_PIPELINE_EXECUTION_ID", "")
        )
        if problem and checkpoints is not None:
            if checkpoints.is_dir() and any(p.is_file() for p in checkpoints.rglob("*")):
                raise TrainingError(f"refusing to load the checkpoint in {checkpoints}: {problem}")
            log(f"checkpoints off: {problem}; a restart of this job starts over")
            checkpoints = None
        train_job(
            dataset,
            model_dir,
            hps,
            weights=Path(weights) if weights else None,
            log=log,
            progress_file=progress,
            checkpoint_dir=checkpoints,
        )
    except (DatasetError, TrainingError, ValueError) as exc:
        log(f"error: {exc}")
        failure = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
        try:
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(str(exc)[:1000])  # SageMaker shows this as the job's FailureReason
        except OSError:
            pass
        return 1
    return 0
