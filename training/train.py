"""SageMaker training entry point (``sagemaker_program``): see loupe_training.entry.train_main."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loupe_training.entry import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
