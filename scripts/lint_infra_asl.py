"""Writes each statemachines/*.asl.json as Step Functions will see it, for asl-validator.

SAM replaces the ``${Name}`` placeholders of a state machine definition with its DefinitionSubstitutions before
Step Functions validates it, so the gate validates that form too: every placeholder is replaced by a well-formed
sample of what CloudFormation would put there (an ARN of the right service for a function, topic or state machine,
a parameter's default, ...). A placeholder that DefinitionSubstitutions does not cover, or a result that is not
JSON, fails here with its name.

usage: python scripts/lint_infra_asl.py template.yaml OUT_DIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from loupe_local.template import ACCOUNT_ID, Resolver, TemplateError, load_yaml

REGION = "us-east-1"
STACK = "loupe"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

# type -> (service, resource part of the ARN, what Ref returns: "name" | "arn" | "url")
_SHAPES: dict[str, tuple[str, str, str]] = {
    "AWS::Serverless::Function": ("lambda", "function:{name}", "name"),
    "AWS::Lambda::Function": ("lambda", "function:{name}", "name"),
    "AWS::Serverless::StateMachine": ("states", "stateMachine:{name}", "arn"),
    "AWS::StepFunctions::StateMachine": ("states", "stateMachine:{name}", "arn"),
    "AWS::SNS::Topic": ("sns", "{name}", "arn"),
    "AWS::SQS::Queue": ("sqs", "{name}", "url"),
    "AWS::DynamoDB::Table": ("dynamodb", "table/{name}", "name"),
    "AWS::S3::Bucket": ("s3", "{name}", "name"),
    "AWS::IAM::Role": ("iam", "role/{name}", "name"),
    "AWS::Events::EventBus": ("events", "event-bus/{name}", "name"),
    "AWS::SageMaker::ModelPackageGroup": ("sagemaker", "model-package-group/{name}", "arn"),
    "AWS::SageMaker::FeatureGroup": ("sagemaker", "feature-group/{name}", "name"),
    # GetAtt Arn: arn:aws:cloudwatch:<region>:<account>:alarm:<name> (CloudFormation, AWS::CloudWatch::Alarm)
    "AWS::CloudWatch::Alarm": ("cloudwatch", "alarm:{name}", "name"),
}


class _Samples:
    """Ref/GetAtt answers shaped like CloudFormation's, for resources that are not deployed."""

    def __init__(self, resources: dict[str, Any]) -> None:
        self.resources = resources

    def _shape(self, logical_id: str) -> tuple[str, str, str, str]:
        res = self.resources.get(logical_id)
        if res is None:
            raise TemplateError(f"DefinitionSubstitutions refers to {logical_id}, which template.yaml lacks")
        rtype = res.get("Type", "")
        service, resource, ref_kind = _SHAPES.get(
            rtype, (rtype.split("::")[1].lower() if "::" in rtype else "unknown", "{name}", "name")
        )
        name = f"{STACK}-{logical_id}"
        if service == "s3":
            return service, name.lower(), f"arn:aws:s3:::{name.lower()}", ref_kind
        if service == "iam":
            return service, name, f"arn:aws:iam::{ACCOUNT_ID}:{resource.format(name=name)}", ref_kind
        return service, name, f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource.format(name=name)}", ref_kind

    def ref(self, logical_id: str) -> str:
        service, name, arn, ref_kind = self._shape(logical_id)
        if ref_kind == "arn":
            return arn
        if ref_kind == "url":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}"
        return name

    def get_att(self, logical_id: str, attr: str) -> str:
        service, name, arn, _ = self._shape(logical_id)
        if attr == "Arn" or attr.endswith("Arn"):
            return arn
        return name


def render(template_path: Path, out_dir: Path) -> list[Path]:
    root = template_path.parent
    template = load_yaml(template_path)
    resources = template.get("Resources", {})
    samples = _Samples(resources)
    resolver = Resolver(template, {}, STACK, REGION, samples.ref, samples.get_att)
    written: list[Path] = []
    used: set[Path] = set()
    for logical_id, res in resources.items():
        if res.get("Type") not in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            continue
        props = res.get("Properties", {})
        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            continue
        path = (root / uri).resolve()
        if not path.is_file():
            raise TemplateError(f"{logical_id}: DefinitionUri {uri} does not exist")
        used.add(path)
        text = path.read_text()
        values = {k: resolver.resolve(v) for k, v in (props.get("DefinitionSubstitutions") or {}).items()}
        missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
        if missing:
            raise TemplateError(f"{uri}: placeholders {missing} are not in {logical_id}'s DefinitionSubstitutions")
        text = PLACEHOLDER.sub(lambda m, values=values: _text(values[m.group(1)]), text)
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{uri} after DefinitionSubstitutions is not JSON: {exc}") from exc
        target = out_dir / f"{logical_id}.{path.name}"
        target.write_text(text)
        written.append(target)
    for path in sorted((root / "statemachines").glob("*.asl.json")):
        if path.resolve() not in used:  # not wired into the template: validated as it is
            target = out_dir / f"unwired.{path.name}"
            target.write_text(path.read_text())
            written.append(target)
    return written


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        written = render(Path(argv[1]), Path(argv[2]))
    except TemplateError as exc:
        print(f"asl: {exc}", file=sys.stderr)
        return 1
    if not written:
        print("asl: no state machine definitions found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
