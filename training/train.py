"""SageMaker training entry point (``sagemaker_program``): the container contract -> loupe_training.jobs.

Channels: ``dataset`` (a prepared dataset, output of the prepare step) and ``weights`` (warm-start weights or a
NO_WEIGHTS marker). Hyperparameters come from ``SM_HPS``. Everything written to ``SM_MODEL_DIR`` becomes the
training job's model.tar.gz (best.pt, model.onnx, model_int8.onnx, train_summary.json).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    from loupe.datasets import DatasetError
    from loupe_training.jobs import train_job
    from loupe_training.train import HyperParams, TrainingError

    hps_raw = {k: v for k, v in json.loads(os.environ.get("SM_HPS", "{}")).items() if not k.startswith("sagemaker_")}
    dataset = Path(os.environ.get("SM_CHANNEL_DATASET", "/opt/ml/input/data/dataset"))
    weights = os.environ.get("SM_CHANNEL_WEIGHTS")
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_dir = Path(os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    output_dir.mkdir(parents=True, exist_ok=True)
    progress = Path(os.environ.get("LOUPE_PROGRESS_FILE") or output_dir / "progress.json")

    def log(msg: str) -> None:
        print(f"[loupe-train] {msg}", flush=True)

    try:
        hps = HyperParams.from_mapping(hps_raw)
        train_job(dataset, model_dir, hps, weights=Path(weights) if weights else None, log=log, progress_file=progress)
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


if __name__ == "__main__":
    sys.exit(main())
