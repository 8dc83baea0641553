"""What a labeling run is configured with, the attribute names of its manifests, and its errors."""

from __future__ import annotations

from dataclasses import dataclass

from loupe import manifests
from loupe.settings import Settings

LABEL_ATTRIBUTE = "loupe-boxes"
VERIFY_ATTRIBUTE = "loupe-verify"
VERIFICATION_CATEGORIES = [
    manifests.VERIFICATION_CORRECT,
    "Incorrect label - missed object",
    "Incorrect label - bounding box not accurate enough",
]
UI_TEMPLATE = "bounding-box.liquid.html"
VERIFY_UI_TEMPLATE = "bounding-box-verification.liquid.html"


class LabelingError(RuntimeError):
    """A labeling step that cannot go on; the state machine catches it and releases the claimed images."""


class NothingToLabel(LabelingError):
    pass


class LabelingJobFailed(LabelingError):
    pass


class LabelingJobStopping(RuntimeError):
    """A stopped labeling job that has not finished stopping: the state machine retries (not a failure)."""


class ThrottlingException(RuntimeError):
    """An AWS throttling error, named so that the state machine's Retry (backoff + jitter) matches it."""


@dataclass(frozen=True)
class LabelingConfig:
    region: str
    raw_bucket: str
    artifact_bucket: str
    role_arn: str
    class_map: dict[str, str]
    workteam_arn: str | None = None
    price_cents: float = 3.6
    max_per_job: int = 500
    feature_group: str | None = None
    # the deployer's statement that no image holds personally identifiable information (InputFreeOfPersonalInformation)
    free_of_pii: bool = False

    @classmethod
    def from_settings(cls, s: Settings) -> LabelingConfig:
        s.require("raw_bucket", "artifact_bucket")
        return cls(
            region=s.aws_region,
            raw_bucket=s.raw_bucket or "",
            artifact_bucket=s.artifact_bucket or "",
            role_arn=s.sagemaker_execution_role_arn or "",
            class_map=s.class_map,
            workteam_arn=s.workteam_arn,
            price_cents=s.public_workforce_price_cents,
            max_per_job=s.labeling_max_per_job,
            feature_group=s.feature_group_name,
            free_of_pii=s.input_free_of_pii,
        )


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
