"""SageMaker Experiments tracking of the training pipeline, settled by removing the dependency.

With a PipelineExperimentConfig in its definition (the SageMaker SDK's default), every pipeline execution creates
an experiment and a trial as the pipeline's role, which SageMakerExecutionRole is not granted
(sagemaker:CreateExperiment, CreateTrial, AssociateTrialComponent...). Loupe keeps its runs' record in the model
registry and the ledger, so the definition says ``"PipelineExperimentConfig": null`` (the SDK:
``pipeline_experiment_config=None`` creates none), and the local Pipelines stand-in does what Pipelines does with
each form: it creates the experiment and the trial only when the definition asks for them."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
from moto import mock_aws

from loupe_local.standins.pipelines.interpreter import Execution
from loupe_local.standins.pipelines.service import track_experiment
from loupe_local.template import load_yaml

REPO = Path(__file__).resolve().parents[3]
SDK_DEFAULT = {
    "ExperimentName": {"Get": "Execution.PipelineName"},
    "TrialName": {"Get": "Execution.PipelineExecutionId"},
}


def execution(tmp_path: Path, config: object) -> Execution:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training/execution/abc123"
    definition = {"Version": "2020-12-01", "PipelineExperimentConfig": config, "Steps": []}
    return Execution(arn, "loupe-training", arn.rsplit("/execution", 1)[0], "abc123", "", {}, definition, tmp_path)


def test_the_stacks_training_pipeline_creates_no_experiment() -> None:
    body = load_yaml(REPO / "template.yaml")["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"]
    text = body["PipelineDefinitionBody"]["Fn::Sub"][0]
    assert re.search(r'"PipelineExperimentConfig": null', text), "the definition asks Pipelines for an experiment"


def test_the_local_pipelines_create_the_experiment_only_when_the_definition_asks(tmp_path: Path) -> None:
    with mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        untracked = execution(tmp_path, None)
        assert track_experiment(sm, untracked) is None
        assert "PipelineExperimentConfig" not in untracked.api()
        assert sm.list_experiments()["ExperimentSummaries"] == []
        tracked = execution(tmp_path, SDK_DEFAULT)
        want = {"ExperimentName": "loupe-training", "TrialName": "abc123"}
        assert track_experiment(sm, tracked) == want and tracked.api()["PipelineExperimentConfig"] == want
        assert track_experiment(sm, tracked) == want  # the next execution finds the experiment: no error
        assert [e["ExperimentName"] for e in sm.list_experiments()["ExperimentSummaries"]] == ["loupe-training"]
        assert [t["TrialName"] for t in sm.list_trials(ExperimentName="loupe-training")["TrialSummaries"]] == ["abc123"]
