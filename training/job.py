"""SageMaker processing entry point (``job.py prepare|evaluate``): see loupe_training.entry.job_main."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loupe_training.entry import build_parser, job_main  # noqa: E402

__all__ = ["build_parser", "job_main"]

if __name__ == "__main__":
    sys.exit(job_main())
