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
# The labeling app's verification (LabelingService=Loupe): a reject names one of Ground Truth's reasons above, or says
# its own in free text, recorded under this category (the text travels as ``loupe-reason`` in the output line)
VERIFICATION_OTHER = "Incorrect label - other"
REJECT_REASONS = VERIFICATION_CATEGORIES[1:]
APP_VERIFICATION_CATEGORIES = [*VERIFICATION_CATEGORIES, VERIFICATION_OTHER]
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


# Who labels (template.yaml LabelingService): the stack's labeling app, or Ground Truth for its existing customers
LOUPE_SERVICE = "Loupe"
GROUND_TRUTH_SERVICE = "GroundTruth"
# Ground Truth's longest TaskAvailabilityLifetimeInSeconds for a private workteam (10 days), the template's default
DEFAULT_TASK_LIFETIME_SECONDS = 864000
MAX_LABELERS_PER_IMAGE = 5
# LabelingDeclineLimit: its default and largest value (loupe.labeling.workforce.decline_task)
DEFAULT_DECLINE_LIMIT = 2
MAX_DECLINE_LIMIT = 10


@dataclass(frozen=True)
class RunOptions:
    """The deploy-time options a labeling run carries in ``config`` (the state machine's Configure state, from
    template.yaml's DefinitionSubstitutions: strings)."""

    service: str = GROUND_TRUTH_SERVICE
    labelers_per_image: int = 1
    task_lifetime_seconds: int = DEFAULT_TASK_LIFETIME_SECONDS
    # labelers who decline an image before the app releases it unlabeled (LabelingDeclineLimit)
    decline_limit: int = DEFAULT_DECLINE_LIMIT

    @classmethod
    def of(cls, run: dict[str, object]) -> RunOptions:
        """A run without ``config`` (one started by hand, or before these options) is a Ground Truth run with one
        labeler and the longest lifetime; a value out of range is a :class:`LabelingError` naming it."""
        config = run.get("config") or {}
        if not isinstance(config, dict):
            raise LabelingError(f"the run's config is not an object: {config!r}")
        service = str(config.get("service") or GROUND_TRUTH_SERVICE)
        if service not in (LOUPE_SERVICE, GROUND_TRUTH_SERVICE):
            raise LabelingError(f"LabelingService {service!r} is neither {LOUPE_SERVICE} nor {GROUND_TRUTH_SERVICE}")
        try:
            labelers = int(str(config.get("labelers_per_image") or 1))
            lifetime = int(str(config.get("task_lifetime_seconds") or DEFAULT_TASK_LIFETIME_SECONDS))
            declines = int(str(config.get("decline_limit") or DEFAULT_DECLINE_LIMIT))
        except ValueError as exc:
            raise LabelingError(
                f"the run's labelers_per_image / task_lifetime_seconds / decline_limit are not integers: {exc}"
            ) from exc
        if not 1 <= declines <= MAX_DECLINE_LIMIT:
            raise LabelingError(f"LabelingDeclineLimit must be 1 to {MAX_DECLINE_LIMIT}, not {declines}")
        if not 1 <= labelers <= MAX_LABELERS_PER_IMAGE:
            raise LabelingError(f"LabelersPerImage must be 1 to {MAX_LABELERS_PER_IMAGE}, not {labelers}")
        if not 60 <= lifetime <= DEFAULT_TASK_LIFETIME_SECONDS:
            raise LabelingError(
                f"LabelingTaskLifetimeSeconds must be 60 to {DEFAULT_TASK_LIFETIME_SECONDS}, not {lifetime}"
            )
        return cls(service, labelers, lifetime, declines)


@dataclass(frozen=True)
class LabelingConfig:
    region: str
    raw_bucket: str
    artifact_bucket: str
    role_arn: str
    class_map: dict[str, str]
    workteam_arn: str | None = None
    max_per_job: int = 500
    feature_group: str | None = None
    # the deployer's statement that no image holds personally identifiable information (InputFreeOfPersonalInformation)
    free_of_pii: bool = False
    # the labeling app's table (LABELING_TASKS_TABLE), used when LabelingService=Loupe
    tasks_table: str | None = None

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
            max_per_job=s.labeling_max_per_job,
            feature_group=s.feature_group_name,
            free_of_pii=s.input_free_of_pii,
            tasks_table=s.labeling_tasks_table,
        )


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
