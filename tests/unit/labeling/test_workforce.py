"""Who Ground Truth's jobs go to (LabelingService=GroundTruth): the configured private or vendor workteam only;
never Amazon Mechanical Turk, which closed on September 30, 2026; nothing at all when no workforce is configured
(the run fails before any job or ledger record exists, so the Catch releases the images)."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from loupe.labeling.config import LabelingConfig, LabelingError
from loupe.labeling.labeling_job import create_labeling_job
from loupe.labeling.verification import create_verification_job

PRIVATE = "arn:aws:sagemaker:eu-west-1:123456789012:workteam/private-crowd/inspectors"
PUBLIC = "arn:aws:sagemaker:eu-west-1:394669845002:workteam/public-crowd/default"
CREATE = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateLabelingJob")


class FakeSageMaker:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def create_labeling_job(self, **request: Any) -> dict[str, str]:
        report = ParamValidator().validate(request, CREATE.input_shape)
        assert not report.has_errors(), report.generate_report()
        self.requests.append(request)
        return {"LabelingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:labeling-job/" + request["LabelingJobName"]}


class FakeLedger:
    def __init__(self) -> None:
        self.jobs: list[str] = []

    def put_job(self, name: str, **_: Any) -> None:
        self.jobs.append(name)


def config(workteam: str | None, free_of_pii: bool = False) -> LabelingConfig:
    return LabelingConfig(
        region="eu-west-1",
        raw_bucket="raw",
        artifact_bucket="art",
        role_arn="arn:aws:iam::123456789012:role/sm",
        class_map={"0": "scratch"},
        workteam_arn=workteam,
        free_of_pii=free_of_pii,
    )


RUN = {
    "claim_id": "20260101t000000-abcdef12",
    "manifest": {
        "manifest_uri": "s3://art/labeling/c/input.manifest",
        "categories_uri": "s3://art/labeling/c/categories.json",
        "ui_uri": "s3://art/labeling/ui/bounding-box.liquid.html",
        "verify_ui_uri": "s3://art/labeling/ui/bounding-box-verification.liquid.html",
        "output_uri": "s3://art/labeling/c/output/",
        "images": ["a" * 64],
    },
}


def test_a_private_workteam_gets_the_job_without_a_mechanical_turk_price() -> None:
    sm, ledger = FakeSageMaker(), FakeLedger()
    create_labeling_job(sm, ledger, config(PRIVATE), RUN, "token-1")
    human = sm.requests[0]["HumanTaskConfig"]
    assert human["WorkteamArn"] == PRIVATE
    assert "PublicWorkforceTaskPrice" not in human


def test_the_public_workforce_creates_no_job_and_no_ledger_record() -> None:
    """The old code sent the images to Mechanical Turk, with a price, when WORKTEAM_ARN was its ARN."""
    sm, ledger = FakeSageMaker(), FakeLedger()
    with pytest.raises(LabelingError, match="Mechanical Turk"):
        create_labeling_job(sm, ledger, config(PUBLIC, free_of_pii=True), RUN, "token-2")
    run = {**RUN, "collected": {"labeled": ["a" * 64], "output_uri": "s3://art/out.manifest"}}
    with pytest.raises(LabelingError, match="Mechanical Turk"):
        create_verification_job(object(), sm, ledger, config(PUBLIC, free_of_pii=True), run, "token-8")
    assert sm.requests == [] and ledger.jobs == []


@pytest.mark.parametrize("workteam", [None, ""])
def test_no_workforce_configured_creates_no_job_and_no_ledger_record(workteam) -> None:
    """The old code sent the images to Mechanical Turk here."""
    sm, ledger = FakeSageMaker(), FakeLedger()
    with pytest.raises(LabelingError, match="LabelingService=Loupe"):
        create_labeling_job(sm, ledger, config(workteam), RUN, "token-3")
    assert sm.requests == [] and ledger.jobs == []


def test_the_verification_job_follows_the_same_rule() -> None:
    sm, ledger = FakeSageMaker(), FakeLedger()
    run = {**RUN, "collected": {"labeled": ["a" * 64], "output_uri": "s3://art/out.manifest"}}
    with pytest.raises(LabelingError, match="no workforce"):
        create_verification_job(object(), sm, ledger, config(None), run, "token-4")
    assert sm.requests == [] and ledger.jobs == []


def _classifiers(request: dict[str, Any]) -> list[str]:
    return request["InputConfig"]["DataAttributes"]["ContentClassifiers"]


def test_the_images_are_declared_free_of_pii_only_when_the_deployer_said_so() -> None:
    """The old code declared FreeOfPersonallyIdentifiableInformation on every deployer's behalf."""
    sm = FakeSageMaker()
    create_labeling_job(sm, FakeLedger(), config(PRIVATE), RUN, "token-5")
    create_labeling_job(sm, FakeLedger(), config(PRIVATE, free_of_pii=True), RUN, "token-6")
    assert "FreeOfPersonallyIdentifiableInformation" not in _classifiers(sm.requests[0])
    assert "FreeOfPersonallyIdentifiableInformation" in _classifiers(sm.requests[1])
