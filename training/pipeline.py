"""The Loupe training pipeline (SageMaker Pipelines, built with the ``sagemaker`` Python SDK 2.x).

    prepare (processing) -> train (training, PyTorch DLC) -> evaluate (processing)
        -> gate: test mAP50 >= threshold AND >= the champion's bar (its mAP50 on the same test images, corrected by
           the paired bootstrap spread of the difference: loupe_training.spread)
            -> yes: register (ModelMetrics, ONNX package, CustomerMetadataProperties; the approval status is the
                    stack's AutoApprove, never a pipeline parameter)
            -> no:  Fail step with the reason

The definition lives in one place: template.yaml's ``TrainingPipeline`` resource, whose ``PipelineDefinitionBody``
is the generated JSON under ``!Sub`` with the spot fields as deploy-time variables (see :func:`template_body`).
``python training/pipeline.py --splice template.yaml`` (``make pipeline``) regenerates it there; ``--check
template.yaml`` exits 1 when the template's copy is stale; ``--print`` writes the spot stack's definition JSON.

The SDK needs no AWS access here: deploy-time names are placeholders replaced by CloudFormation ``${...}``
references (bucket, role, region, group). The SDK is pinned (see ``SDK_REQUIREMENT``) and runs from its own
venv (``make pipeline`` creates ``.tools/sagemaker-venv``): sagemaker 2.x pins versions of attrs, packaging,
protobuf and graphql-core that would downgrade the project venv; sagemaker 3.x (sagemaker-mlops) pulls mlflow,
scikit-learn and pyarrow for what is a pure code generator here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

SDK_REQUIREMENT = "sagemaker==2.257.7"
HERE = Path(__file__).resolve().parent

PIPELINE_NAME = "loupe-training"
PYTORCH_VERSION = "2.8.0"
PYTHON_VERSION = "py312"
CODE_KEY = "code/training/sourcedir.tar.gz"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"

# Managed spot training (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StoppingCondition.html):
# MaxWaitTimeInSeconds must be >= MaxRuntimeInSeconds, and MaxRuntimeInSeconds is at most 28 days. A pipeline
# definition cannot compute max(wait, run) from parameters and CloudFormation cannot add or compare numbers (Rules
# only test equality and membership), so a separate MaxWait parameter could always be set below MaxRuntime. Spot's
# MaxWait is therefore fixed to the largest MaxRuntime SageMaker accepts: every MaxRuntime SageMaker takes (the
# stack's TrainingMaxRuntimeSeconds is bounded to 1..MAX_RUNTIME_SECONDS) gives a valid request. The price: a spot
# job starved of capacity may wait up to 28 days minus its run time; stop the execution to give up earlier.
#
# Spot itself is a deploy-time choice (template.yaml's TrainingUseSpot -> Condition UseSpotTraining), not a pipeline
# parameter: CreateTrainingJob refuses MaxWaitTimeInSeconds unless EnableManagedSpotTraining is true, and a pipeline
# parameter can change a value but never remove a field. The template body carries two Fn::Sub variables instead:
# ${SpotFlag} (the EnableManagedSpotTraining value) and ${SpotMaxWait} (the StoppingCondition's MaxWait member or
# nothing), both chosen by Fn::If on that condition.
#
# The registration status is a deploy-time value too (template.yaml's AutoApprove -> Condition AutoApproveOn), never a
# pipeline parameter: StartPipelineExecution lets any caller set every parameter, so a ModelApprovalStatus parameter
# let whoever may start the pipeline register its package Approved (and deploy it) on a stack whose AutoApprove is
# false. The Register step's ModelApprovalStatus is the Fn::Sub variable ${ApprovalStatus} instead, chosen by Fn::If.
MAX_RUNTIME_SECONDS = 28 * 24 * 3600
SPOT_MAX_WAIT_SECONDS = MAX_RUNTIME_SECONDS
SPOT_CONDITION = "UseSpotTraining"
SPOT_FLAG_VAR = "SpotFlag"
SPOT_MAX_WAIT_VAR = "SpotMaxWait"
APPROVAL_CONDITION = "AutoApproveOn"
APPROVAL_VAR = "ApprovalStatus"
# what the SDK writes for the Register step; template_body() turns it into ${ApprovalStatus}
_APPROVAL_PLACEHOLDER = "PendingManualApproval"
# the RegisterRefused step's fixed status: a model the gate refused waits for a person, whatever AutoApprove says
_REFUSED_STATUS = "PendingManualApproval"
REGISTER_STEP = "Register-RegisterModel"

# deploy-time values: placeholders in the SDK, ${...} in the CloudFormation template
_REGION = "us-east-1"
_BUCKET = "loupe-placeholder-artifact-bucket"
_ROLE = "arn:aws:iam::111111111111:role/loupe-placeholder-role"
_GROUP = "loupe-placeholder-model-package-group"
SUBSTITUTIONS = {
    _BUCKET: "${ArtifactBucket}",
    _ROLE: "${SageMakerExecutionRole.Arn}",
    _GROUP: "${AWS::StackName}-models",
    f".{_REGION}.": ".${AWS::Region}.",
}

PROC = "/opt/ml/processing"
# the processing steps unpack the same source tarball as the training job and run job.py from it. Its
# requirements.txt is the hashed lock (training/loupe_training/requirements.lock): --require-hashes makes pip refuse
# any distribution whose sha256 differs and any requirement the lock does not pin (the training job's toolkit runs
# pip on requirements.txt with no flag, and a file with hashes puts pip in hash-checking mode all the same).
PROCESSING_ENTRYPOINT = [
    "/bin/bash",
    "-c",
    "set -euo pipefail; mkdir -p /opt/ml/code; tar -xzf /opt/ml/processing/input/code/sourcedir.tar.gz "
    "-C /opt/ml/code; pip install --quiet --no-cache-dir --require-hashes -r /opt/ml/code/requirements.txt; "
    'exec python3 /opt/ml/code/job.py "$@"',
    "job.py",
]


def build_pipeline():  # one linear recipe reads best in one place
    import boto3
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.model import Model
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.parameters import (
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_context import PipelineSession
    from sagemaker.workflow.pipeline_definition_config import PipelineDefinitionConfig
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.retry import (
        SageMakerJobExceptionTypeEnum,
        SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum,
        StepRetryPolicy,
    )
    from sagemaker.workflow.steps import ProcessingStep, TrainingStep

    class OfflineSession(PipelineSession):
        """Never asks AWS for a default bucket (the definition is generated offline)."""

        def default_bucket(self) -> str:
            return _BUCKET

    session = OfflineSession(
        boto_session=boto3.Session(region_name=_REGION, aws_access_key_id="x", aws_secret_access_key="x"),  # noqa: S106 - offline, never used
        default_bucket=_BUCKET,
    )
    s3 = f"s3://{_BUCKET}"

    dataset_uri = ParameterString("DatasetS3Uri", default_value=f"{s3}/datasets/v1/")
    processing_instance = ParameterString("ProcessingInstanceType", default_value="ml.m5.xlarge")
    training_instance = ParameterString("TrainingInstanceType", default_value="ml.g4dn.xlarge")
    # the defaults are template.yaml's stack defaults (the training workflow passes the stack's values)
    max_run = ParameterInteger("TrainingMaxRunSeconds", default_value=7200)
    epochs = ParameterString("Epochs", default_value="60")
    imgsz = ParameterString("ImageSize", default_value="320")
    model_cfg = ParameterString("ModelConfig", default_value="yolov8n.yaml")
    warm_start = ParameterString("WarmStart", default_value="champion")
    threshold = ParameterFloat("MinTestMap50", default_value=0.5)
    group = ParameterString("ModelPackageGroupName", default_value=_GROUP)

    def pytorch_image(instance_type: str, scope: str = "training", version: str = PYTORCH_VERSION) -> str:
        return image_uris.retrieve(
            "pytorch",
            region=_REGION,
            version=version,
            py_version=PYTHON_VERSION,
            instance_type=instance_type,
            image_scope=scope,
        )

    train_image = pytorch_image("ml.g4dn.xlarge")  # GPU build; the processing jobs run the CPU build
    proc_image = pytorch_image("ml.m5.xlarge")
    infer_image = pytorch_image("ml.m5.xlarge", "inference", version="2.6.0")
    # https://docs.aws.amazon.com/sagemaker/latest/dg/pipelines-retry-policy.html: service faults and throttling of
    # the pipeline's own calls, then the job's capacity / internal / resource-limit errors (a spot pool may be empty
    # for a while: minutes apart, for up to 2 hours). Errors of our code (ClientError, AlgorithmError) are not retried.
    retry_policies = [
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
            interval_seconds=5,
            backoff_rate=2.0,
            max_attempts=5,
        ),
        SageMakerJobStepRetryPolicy(
            exception_types=[
                SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
            ],
            interval_seconds=60,
            backoff_rate=2.0,
            expire_after_mins=120,
        ),
    ]
    code_input = ProcessingInput(source=f"{s3}/{CODE_KEY}", destination=f"{PROC}/input/code", input_name="code")

    def processor(base: str) -> Processor:
        return Processor(
            role=_ROLE,
            image_uri=proc_image,
            instance_count=1,
            instance_type=processing_instance,
            entrypoint=PROCESSING_ENTRYPOINT,
            base_job_name=base,
            sagemaker_session=session,
            volume_size_in_gb=30,
            max_runtime_in_seconds=3600,
            env={"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"},
        )

    prepare = ProcessingStep(
        name="Prepare",
        processor=processor("loupe-prepare"),
        inputs=[
            code_input,
            ProcessingInput(source=dataset_uri, destination=f"{PROC}/input/dataset", input_name="dataset"),
        ],
        outputs=[
            ProcessingOutput(output_name="dataset", source=f"{PROC}/output/dataset"),
            ProcessingOutput(output_name="weights", source=f"{PROC}/output/weights"),
        ],
        job_arguments=["prepare", "--warm-start", warm_start, "--model-package-group", group],
        retry_policies=retry_policies,
    )

    # per execution: a retried or restarted job resumes its own run, never another execution's. The job is told the
    # prefix and its execution id too and loads a checkpoint only when the one ends with the other
    # (loupe_training.train.checkpoint_source_problem): a checkpoint is a pickle, loading it runs code.
    checkpoint_uri = Join(on="/", values=[f"{s3}/pipeline/checkpoints", ExecutionVariables.PIPELINE_EXECUTION_ID])
    estimator = Estimator(
        image_uri=train_image,
        role=_ROLE,
        instance_count=1,
        instance_type=training_instance,
        volume_size=30,
        max_run=max_run,
        use_spot_instances=True,  # the template turns both spot fields into deploy-time variables (template_body)
        max_wait=SPOT_MAX_WAIT_SECONDS,
        checkpoint_s3_uri=checkpoint_uri,
        checkpoint_local_path=CHECKPOINT_LOCAL_PATH,
        output_path=f"{s3}/pipeline/training",
        base_job_name="loupe-train",
        sagemaker_session=session,
        disable_profiler=True,
        debugger_hook_config=False,
        hyperparameters={
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": f"{s3}/{CODE_KEY}",
            "epochs": epochs,
            "imgsz": imgsz,
            "model": model_cfg,
        },
        environment={
            "YOLO_OFFLINE": "1",
            "YOLO_AUTOINSTALL": "0",
            "LOUPE_CHECKPOINT_S3_URI": checkpoint_uri,
            "LOUPE_PIPELINE_EXECUTION_ID": ExecutionVariables.PIPELINE_EXECUTION_ID,
        },
        metric_definitions=[
            {"Name": "val:mAP50", "Regex": r"val_mAP50=([0-9.]+)"},
            {"Name": "val:mAP50-95", "Regex": r"val_mAP50-95=([0-9.]+)"},
            {"Name": "train:box_loss", "Regex": r"box_loss=([0-9.]+)"},
        ],
    )
    prepared = prepare.properties.ProcessingOutputConfig.Outputs
    train = TrainingStep(
        name="Train",
        estimator=estimator,
        inputs={
            "dataset": TrainingInput(s3_data=prepared["dataset"].S3Output.S3Uri),
            "weights": TrainingInput(s3_data=prepared["weights"].S3Output.S3Uri),
        },
        retry_policies=retry_policies,
    )
    model_artifact = train.properties.ModelArtifacts.S3ModelArtifacts

    gate_file = PropertyFile(name="GateReport", output_name="evaluation", path="gate.json")
    evaluate = ProcessingStep(
        name="Evaluate",
        processor=processor("loupe-evaluate"),
        inputs=[
            code_input,
            ProcessingInput(source=model_artifact, destination=f"{PROC}/input/model", input_name="model"),
            ProcessingInput(
                source=prepared["dataset"].S3Output.S3Uri,
                destination=f"{PROC}/input/dataset",
                input_name="dataset",
            ),
        ],
        outputs=[
            ProcessingOutput(output_name="evaluation", source=f"{PROC}/output/evaluation"),
            ProcessingOutput(output_name="package", source=f"{PROC}/output/package"),
        ],
        job_arguments=[
            "evaluate",
            "--model-package-group",
            group,
            "--training-artifact-uri",
            model_artifact,
        ],
        property_files=[gate_file],
        retry_policies=retry_policies,
    )
    outputs = evaluate.properties.ProcessingOutputConfig.Outputs
    eval_uri = outputs["evaluation"].S3Output.S3Uri
    package_uri = outputs["package"].S3Output.S3Uri

    def gate(key: str) -> JsonGet:
        return JsonGet(step_name=evaluate.name, property_file=gate_file, json_path=key)

    model = Model(
        image_uri=infer_image,
        model_data=Join(on="/", values=[package_uri, "model.tar.gz"]),
        role=_ROLE,
        sagemaker_session=session,
    )
    metadata = {
        "dataset_uri": dataset_uri,
        "dataset_version": gate("dataset_version"),
        "dataset_digest": gate("dataset_digest"),
        "model_sha256": gate("model_sha256"),
        "model_int8_sha256": gate("model_int8_sha256"),
        "model_card_sha256": gate("model_card_sha256"),
        "package_sha256": gate("package_sha256"),
        "test_map50": gate("map50_text"),
        "champion_map50": gate("champion_map50_text"),
        "champion_bar": gate("champion_bar_text"),
        "test_map50_ci90": gate("map50_ci90_text"),
        "code_version": gate("code_version"),
        "weights_uri": model_artifact,
        "evaluation_uri": eval_uri,
        # why the model may be weak, in words (loupe_training.diagnosis): stopped early, not converged, small data
        "training_diagnosis": gate("diagnosis_short"),
    }

    def registration(approval_status: str, extra: dict, description: str):  # noqa: ANN202 - the SDK's step args
        return model.register(
            content_types=["image/jpeg", "image/png"],
            response_types=["application/json"],
            inference_instances=["ml.m5.large"],
            transform_instances=["ml.m5.large"],
            model_package_group_name=group,
            approval_status=approval_status,
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json", s3_uri=Join(on="/", values=[eval_uri, "evaluation.json"])
                )
            ),
            customer_metadata_properties={**metadata, **extra},
            description=description,
        )

    package_description = "Loupe YOLOv8 ONNX package (model.onnx, model_int8.onnx when kept, model_card.json)"
    # the stack's AutoApprove decides (template_body), never a caller
    register_args = registration(_APPROVAL_PLACEHOLDER, {"gate": "passed"}, package_description)
    # RegisterModel runs no job: only the step-level faults apply
    register = ModelStep(name="Register", step_args=register_args, retry_policies=retry_policies[:1])
    refusal = [
        "Gate refused the model: test mAP50",
        gate("map50"),
        "must be >= MinTestMap50",
        threshold,
        "and >= the champion's bar",
        gate("champion_bar"),
        "(the champion's mAP50",
        gate("champion_map50"),
        "on the same test images, corrected by the spread of the difference)",
        "(dataset",
        gate("dataset_version"),
        ").",
    ]
    # the refusal as a metadata value: SageMaker takes only letters, spaces, digits and _.:/=+-@ there (256 at most)
    refusal_value = [
        "refused: test mAP50",
        gate("map50_text"),
        "- MinTestMap50",
        threshold,
        "- champion bar",
        gate("champion_bar_text"),
        "- dataset",
        gate("dataset_version"),
    ]
    # A refused model is still registered, always PendingManualApproval (AutoApprove never applies to it) with the
    # refusal and the training's diagnosis in its metadata: a person may look at it and approve it anyway (the demo's
    # v1 on a small real set), or leave it. The execution still fails with the reason (the GateRefused step).
    refused_register = ModelStep(
        name="RegisterRefused",
        step_args=registration(
            _REFUSED_STATUS,
            {"gate": "refused", "gate_refusal": Join(on=" ", values=refusal_value)},
            "Loupe candidate REFUSED by the gate (see gate_refusal); approve only after looking at it",
        ),
        retry_policies=retry_policies[:1],
    )
    fail = FailStep(
        name="GateRefused",
        error_message=Join(on=" ", values=[*refusal, "Training:", gate("diagnosis_text")]),
        depends_on=[refused_register],
    )
    condition = ConditionStep(
        name="Gate",
        conditions=[
            ConditionGreaterThanOrEqualTo(left=gate("map50"), right=threshold),
            ConditionGreaterThanOrEqualTo(left=gate("map50"), right=gate("champion_bar")),
        ],
        if_steps=[register],
        else_steps=[refused_register, fail],
    )
    return Pipeline(
        name=PIPELINE_NAME,
        parameters=[
            dataset_uri,
            processing_instance,
            training_instance,
            max_run,
            epochs,
            imgsz,
            model_cfg,
            warm_start,
            threshold,
            group,
        ],
        steps=[prepare, train, evaluate, condition],
        sagemaker_session=session,
        pipeline_definition_config=PipelineDefinitionConfig(use_custom_job_prefix=False),
        # No SageMaker Experiments tracking: with a PipelineExperimentConfig (the SDK's default) each execution
        # creates an experiment and a trial as the pipeline's role, which would need sagemaker:CreateExperiment,
        # CreateTrial, AssociateTrialComponent... Loupe records its runs in the model registry and the ledger, so
        # the dependency is removed rather than granted (SDK: "If set to None, no experiment or trial will be
        # created automatically").
        pipeline_experiment_config=None,
    )


def _spot(definition: dict) -> dict:
    """The SDK's spot fields are what template_body() turns into deploy-time variables: make sure they are there."""
    for step in definition["Steps"]:
        if step["Type"] == "Training":
            args = step["Arguments"]
            if args.get("EnableManagedSpotTraining") is not True:
                raise RuntimeError("the SDK no longer writes EnableManagedSpotTraining for a spot estimator")
            if args["StoppingCondition"].get("MaxWaitTimeInSeconds") != SPOT_MAX_WAIT_SECONDS:
                raise RuntimeError("the SDK no longer writes the spot MaxWaitTimeInSeconds it was given")
    return definition


def template_body(definition: str) -> str:
    """The definition JSON with its spot fields as the Fn::Sub variables ${SpotFlag} and ${SpotMaxWait}.

    With SpotFlag = "true" and SpotMaxWait = the member text (spot_variables(True)) the body parses to the definition;
    with "false" and "" the Train step has no MaxWaitTimeInSeconds, as CreateTrainingJob requires without spot.
    """
    flag = re.compile(r'("EnableManagedSpotTraining": )true(?=,?\n)')
    # sort_keys puts MaxWaitTimeInSeconds after MaxRuntimeInSeconds: the member goes with its leading comma
    max_wait = re.compile(rf',\n *"MaxWaitTimeInSeconds": {SPOT_MAX_WAIT_SECONDS}(?=\n)')
    body, flags = flag.subn(rf"\g<1>${{{SPOT_FLAG_VAR}}}", definition)
    body, waits = max_wait.subn(f"${{{SPOT_MAX_WAIT_VAR}}}", body)
    if flags != 1 or waits != 1:
        raise RuntimeError(f"expected one spot training step, found {flags} spot flags and {waits} MaxWait members")
    # only the Register step's status is the stack's: RegisterRefused keeps its fixed PendingManualApproval. With
    # sorted keys a step's "Name" follows its "Arguments", and CreateModelPackage's arguments have no "Name" key, so
    # the first "Name" after a status is the name of the step it belongs to
    approval = re.compile(rf'("ModelApprovalStatus": )"{_APPROVAL_PLACEHOLDER}"(?=,?\n)')
    name = re.compile(r'"Name": "([^"]+)"')
    ours = []
    for found in approval.finditer(body):
        step = name.search(body, found.end())
        if step is not None and step.group(1) == REGISTER_STEP:
            ours.append(found)
    if len(ours) != 1:
        raise RuntimeError(f"expected one {REGISTER_STEP} step with a fixed ModelApprovalStatus, found {len(ours)}")
    found = ours[0]
    return body[: found.start()] + f'{found.group(1)}"${{{APPROVAL_VAR}}}"' + body[found.end() :]


def spot_variables(use_spot: bool) -> dict[str, str]:
    """The values of the template's spot variables for each side of the UseSpotTraining condition."""
    if use_spot:
        return {SPOT_FLAG_VAR: "true", SPOT_MAX_WAIT_VAR: f', "MaxWaitTimeInSeconds": {SPOT_MAX_WAIT_SECONDS}'}
    return {SPOT_FLAG_VAR: "false", SPOT_MAX_WAIT_VAR: ""}


def approval_variables(auto_approve: bool) -> dict[str, str]:
    """The value of the template's ${ApprovalStatus} for each side of the AutoApproveOn condition."""
    return {APPROVAL_VAR: "Approved" if auto_approve else _APPROVAL_PLACEHOLDER}


def generate() -> str:
    definition = json.loads(build_pipeline().definition())
    definition = _spot(definition)
    text = json.dumps(definition, indent=1, sort_keys=True)
    for placeholder, ref in SUBSTITUTIONS.items():
        text = text.replace(placeholder, ref)
    if "placeholder" in text:
        raise RuntimeError("a deploy-time placeholder was left in the pipeline definition")
    return text + "\n"


def resource(definition: str) -> str:
    """template.yaml's ``TrainingPipeline`` resource (YAML lines) for this definition; spot chosen at deploy time."""
    body = "".join(
        f"            {line}\n" if line else "\n" for line in template_body(definition).rstrip("\n").split("\n")
    )
    on, off = spot_variables(True), spot_variables(False)
    variables = "".join(
        f"{'          - ' if i == 0 else '            '}{name}: !If [{SPOT_CONDITION}, {json.dumps(on[name])}, "
        f"{json.dumps(off[name])}]\n"
        for i, name in enumerate((SPOT_FLAG_VAR, SPOT_MAX_WAIT_VAR))
    )
    approve, pend = approval_variables(True)[APPROVAL_VAR], approval_variables(False)[APPROVAL_VAR]
    variables += f"            {APPROVAL_VAR}: !If [{APPROVAL_CONDITION}, {approve}, {pend}]\n"
    return (
        "  TrainingPipeline:\n"
        "    Type: AWS::SageMaker::Pipeline\n"
        "    Properties:\n"
        '      PipelineName: !Sub "${AWS::StackName}-training"\n'
        '      PipelineDisplayName: !Sub "${AWS::StackName}-training"\n'
        "      PipelineDescription: Loupe prepare -> train -> evaluate (test split) -> gate -> register\n"
        "      RoleArn: !GetAtt SageMakerExecutionRole.Arn\n"
        "      PipelineDefinition:\n"
        "        PipelineDefinitionBody: !Sub\n"
        "          - |\n"
        f"{body}"
        f"{variables}"
    )


def generate_in_sdk_venv() -> str:
    """Run the generator with the pinned SDK's venv (for callers in the project venv, e.g. tests)."""
    import subprocess

    python = HERE.parent / ".tools" / "sagemaker-venv" / "bin" / "python"
    if not python.is_file():
        raise FileNotFoundError(f"{python} missing: run `make pipeline` (creates it with {SDK_REQUIREMENT})")
    out = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--print"], capture_output=True, text=True, check=True, timeout=300
    )
    return out.stdout


def splice(template_text: str, resource_text: str) -> str:
    """template.yaml with its TrainingPipeline resource replaced by ``resource_text`` (see :func:`resource`)."""
    lines = template_text.split("\n")
    start = lines.index("  TrainingPipeline:")
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("   ")):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[:start] + resource_text.rstrip("\n").split("\n") + lines[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--print", action="store_true", help="print the spot stack's definition JSON on stdout")
    action.add_argument("--splice", metavar="TEMPLATE", help="replace TrainingPipeline in this template.yaml")
    action.add_argument("--check", metavar="TEMPLATE", help="exit 1 when its TrainingPipeline is stale")
    args = parser.parse_args(argv)
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)  # the SDK's notes about popped job names and config files
    definition = generate()
    if args.print:
        sys.stdout.write(definition)
        return 0
    template = Path(args.splice or args.check)
    current = template.read_text()
    wanted = splice(current, resource(definition))
    if args.check:
        if current != wanted:
            print(f"stale: TrainingPipeline in {template} (run make pipeline)", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        template.write_text(wanted)
        print(f"updated TrainingPipeline in {template}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
