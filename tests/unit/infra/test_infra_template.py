"""Properties of template.yaml that matter when it is deployed, checked on the project's own loader.

Each rule is a small function run twice: against the real template (must hold) and against a known-bad sample
(must be caught), so a rule cannot pass by checking nothing.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from loupe_local.template import SamApp, load_sam_app, load_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

# Actions that have no resource-level permissions (AWS documents "*" for them), allowed on Resource "*".
NO_RESOURCE_LEVEL = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",  # only with a cloudwatch:namespace condition, see below
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    # Step Functions log delivery to CloudWatch Logs
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    # no resource type (Service Authorization Reference, AWS IoT Greengrass V2): only "*" matches it
    "greengrass:CreateDeployment",
    # a task token's answer: no resource type (Service Authorization Reference, AWS Step Functions; parliament)
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
}
READ_ONLY_VERBS = ("Get", "List", "Describe", "BatchGet", "BatchCheck")


@pytest.fixture(scope="module")
def original() -> dict[str, Any]:
    return load_yaml(TEMPLATE)


@pytest.fixture(scope="module")
def app() -> SamApp:
    return load_sam_app(TEMPLATE)


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _of_type(resources: dict[str, Any], rtype: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v.get("Type") == rtype}


def _refers_to(value: Any, logical_id: str) -> bool:
    """Ref / GetAtt / Sub of logical_id anywhere in value."""
    text = json.dumps(value)
    return (
        f'{{"Ref": "{logical_id}"}}' in text
        or f'"Fn::GetAtt": ["{logical_id}",' in text
        or f'"Fn::GetAtt": "{logical_id}.' in text
        or f"${{{logical_id}}}" in text
        or f"${{{logical_id}." in text
    )


# --------------------------------------------------------------------------------------------- buckets


def bucket_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    policies = _of_type(resources, "AWS::S3::BucketPolicy")
    for name, bucket in _of_type(resources, "AWS::S3::Bucket").items():
        props = bucket.get("Properties", {})
        sse = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in sse):
            problems.append(f"{name}: no default encryption")
        block = props.get("PublicAccessBlockConfiguration", {})
        for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(key) is not True:
                problems.append(f"{name}: {key} is not true")
        tls_only = False
        for policy in policies.values():
            pprops = policy.get("Properties", {})
            if pprops.get("Bucket") != {"Ref": name}:
                continue
            for st in _listify(pprops.get("PolicyDocument", {}).get("Statement", [])):
                cond = st.get("Condition", {}).get("Bool", {})
                resources_text = json.dumps(st.get("Resource"))
                if (
                    st.get("Effect") == "Deny"
                    and str(cond.get("aws:SecureTransport")).lower() == "false"
                    and "s3:*" in _listify(st.get("Action"))
                    and _refers_to(st.get("Resource"), name)
                    and "/*" in resources_text
                ):
                    tls_only = True
        if not tls_only:
            problems.append(f"{name}: no bucket policy denying non-TLS access to the bucket and its objects")
    return problems


def test_every_bucket_is_encrypted_private_and_tls_only(original) -> None:
    assert _of_type(original["Resources"], "AWS::S3::Bucket"), "the template declares buckets"
    assert bucket_problems(original["Resources"]) == []


def test_bucket_rule_catches_an_open_bucket() -> None:
    bad = {
        "Open": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "Half": {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": False,
                },
            },
        },
    }
    problems = bucket_problems(bad)
    assert "Open: no default encryption" in problems
    assert "Half: RestrictPublicBuckets is not true" in problems
    assert any(p.startswith("Half: no bucket policy denying non-TLS") for p in problems)


# --------------------------------------------------------------------------------------------- logs, tracing


def log_problems(resources: dict[str, Any], globals_fn: dict[str, Any]) -> list[str]:
    problems = []
    log_groups = _of_type(resources, "AWS::Logs::LogGroup")
    for name, fn in _of_type(resources, "AWS::Serverless::Function").items():
        props = fn.get("Properties", {})
        matching = [
            lg
            for lg in log_groups.values()
            if lg.get("Properties", {}).get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}
        ]
        if not matching:
            problems.append(f"{name}: no /aws/lambda/ log group declared (Lambda would create one that never expires)")
        elif not all(lg["Properties"].get("RetentionInDays") for lg in matching):
            problems.append(f"{name}: its log group has no retention")
        if props.get("Tracing", globals_fn.get("Tracing")) != "Active":
            problems.append(f"{name}: Tracing is not Active")
    for name, sm in _of_type(resources, "AWS::Serverless::StateMachine").items():
        props = sm.get("Properties", {})
        if props.get("Tracing", {}).get("Enabled") is not True:
            problems.append(f"{name}: tracing is not enabled")
        destinations = props.get("Logging", {}).get("Destinations", [])
        targets = [d.get("CloudWatchLogsLogGroup", {}).get("LogGroupArn", {}) for d in destinations]
        groups = [t["Fn::GetAtt"][0] for t in targets if isinstance(t, dict) and "Fn::GetAtt" in t]
        if not groups:
            problems.append(f"{name}: does not log to a log group of the template")
        for group in groups:
            if not log_groups.get(group, {}).get("Properties", {}).get("RetentionInDays"):
                problems.append(f"{name}: log group {group} has no retention")
    return problems


def test_every_function_and_state_machine_logs_with_retention_and_traces(original) -> None:
    globals_fn = original.get("Globals", {}).get("Function", {})
    assert log_problems(original["Resources"], globals_fn) == []


def test_log_rule_catches_missing_log_group_and_tracing() -> None:
    bad = {
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {}},
        "Sm": {"Type": "AWS::Serverless::StateMachine", "Properties": {}},
        "FnLogs": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": {"Fn::Sub": "/aws/lambda/${Other}"}},
        },
    }
    problems = log_problems(bad, {})
    assert any(p.startswith("Fn: no /aws/lambda/ log group") for p in problems)
    assert "Fn: Tracing is not Active" in problems
    assert "Sm: tracing is not enabled" in problems
    assert "Sm: does not log to a log group of the template" in problems


# --------------------------------------------------------------------------------------------- IAM


def _policy_documents(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for name, res in resources.items():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::IAM::Role":
            docs += [(name, p.get("PolicyDocument", {})) for p in props.get("Policies", [])]
        elif res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append((name, props.get("PolicyDocument", {})))
    return docs


def iam_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    for name, doc in _policy_documents(resources):
        for st in _listify(doc.get("Statement", [])):
            if st.get("Effect") != "Allow":
                continue
            actions = [a for a in _listify(st.get("Action", [])) if isinstance(a, str)]
            for action in actions:
                if action == "*" or action.endswith(":*"):
                    problems.append(f"{name}: wildcard action {action}")
            if "*" not in _listify(st.get("Resource")):
                continue
            for action in actions:
                verb = action.split(":", 1)[-1]
                if verb.startswith(READ_ONLY_VERBS):
                    continue
                if action not in NO_RESOURCE_LEVEL:
                    problems.append(f"{name}: {action} on Resource *")
                elif action == "cloudwatch:PutMetricData" and "cloudwatch:namespace" not in json.dumps(
                    st.get("Condition", {})
                ):
                    problems.append(f"{name}: cloudwatch:PutMetricData on * without a namespace condition")
    for name, res in _of_type(resources, "AWS::IAM::Role").items():
        for arn in res.get("Properties", {}).get("ManagedPolicyArns", []):
            if re.search(r"FullAccess|AdministratorAccess|PowerUserAccess", json.dumps(arn)):
                problems.append(f"{name}: broad managed policy {arn}")
    return sorted(set(problems))


def test_no_iam_write_action_on_every_resource(app) -> None:
    # the transformed template: SAM policy templates and event wiring expanded into the roles they become
    assert _policy_documents(app.resources), "the template grants permissions"
    assert iam_problems(app.resources) == []


def test_iam_rule_catches_writes_on_star_and_broad_policies() -> None:
    bad = {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "ManagedPolicyArns": ["arn:aws:iam::aws:policy/CloudWatchLogsFullAccess"],
                "Policies": [
                    {
                        "PolicyName": "p",
                        "PolicyDocument": {
                            "Statement": [
                                {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "*"},
                                {"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:::q"},
                                {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
                                {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
                            ]
                        },
                    }
                ],
            },
        }
    }
    assert iam_problems(bad) == [
        "Role: broad managed policy arn:aws:iam::aws:policy/CloudWatchLogsFullAccess",
        "Role: cloudwatch:PutMetricData on * without a namespace condition",
        "Role: s3:PutObject on Resource *",
        "Role: wildcard action sqs:*",
    ]


# --------------------------------------------------------------------------------------------- failures


def dead_letter_problems(resources: dict[str, Any], dlq: str) -> list[str]:
    """Every EventBridge target and every function's async failures end in the one watched DLQ."""
    problems = []
    dlq_arn = {"Fn::GetAtt": [dlq, "Arn"]}
    for name, rule in _of_type(resources, "AWS::Events::Rule").items():
        for target in rule.get("Properties", {}).get("Targets", []):
            if target.get("DeadLetterConfig", {}).get("Arn") != dlq_arn:
                problems.append(f"{name}/{target.get('Id')}: no DeadLetterConfig to {dlq}")
    configs = _of_type(resources, "AWS::Lambda::EventInvokeConfig")
    for name in _of_type(resources, "AWS::Lambda::Function"):
        on_failure = [
            c["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            for c in configs.values()
            if c.get("Properties", {}).get("FunctionName") == {"Ref": name}
        ]
        if dlq_arn not in on_failure:
            problems.append(f"{name}: async failures do not go to {dlq}")
    watched = [
        a
        for a in _of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/SQS" and _refers_to(a["Properties"].get("Dimensions"), dlq)
    ]
    if not watched:
        problems.append(f"no alarm watches {dlq}")
    return problems


def test_every_rule_target_and_function_fails_into_the_watched_dead_letter_queue(app) -> None:
    assert dead_letter_problems(app.resources, "EventsDeadLetterQueue") == []


def test_sam_creates_no_extra_queue_per_rule(app, original) -> None:
    declared = set(_of_type(original["Resources"], "AWS::SQS::Queue"))
    assert set(_of_type(app.resources, "AWS::SQS::Queue")) == declared


def test_dead_letter_rule_catches_a_target_without_dlq() -> None:
    bad = {
        "Rule": {"Type": "AWS::Events::Rule", "Properties": {"Targets": [{"Id": "T", "Arn": "x"}]}},
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
    }
    assert dead_letter_problems(bad, "Dlq") == [
        "Rule/T: no DeadLetterConfig to Dlq",
        "Fn: async failures do not go to Dlq",
        "no alarm watches Dlq",
    ]


def test_alarm_actions_can_publish_to_their_topics(original) -> None:
    """CloudWatch alarms cannot use a topic under the AWS managed aws/sns key; a CMK must admit them."""
    resources = original["Resources"]
    for name, alarm in _of_type(resources, "AWS::CloudWatch::Alarm").items():
        for action in alarm["Properties"].get("AlarmActions", []):
            if not (isinstance(action, dict) and "Ref" in action):
                continue
            topic = resources.get(action["Ref"], {})
            if topic.get("Type") != "AWS::SNS::Topic":
                continue
            key = topic["Properties"].get("KmsMasterKeyId")
            assert key != "alias/aws/sns", f"{name} publishes to {action['Ref']}, encrypted with aws/sns"
            if isinstance(key, dict):
                key_policy = resources[key["Ref"]]["Properties"]["KeyPolicy"]
                principals = json.dumps([s.get("Principal") for s in key_policy["Statement"]])
                assert "cloudwatch.amazonaws.com" in principals, f"{key['Ref']} does not admit CloudWatch alarms"


# --------------------------------------------------------------------------------------------- state machines


def substitution_problems(resources: dict[str, Any], root: Path) -> list[str]:
    problems = []
    for name, sm in _of_type(resources, "AWS::Serverless::StateMachine").items():
        props = sm.get("Properties", {})
        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            continue
        text = (root / uri).read_text()
        missing = sorted(set(PLACEHOLDER.findall(text)) - set(props.get("DefinitionSubstitutions") or {}))
        if missing:
            problems.append(f"{name}: {uri} uses {missing} without DefinitionSubstitutions")
    return problems


def test_every_state_machine_placeholder_is_substituted(original) -> None:
    machines = _of_type(original["Resources"], "AWS::Serverless::StateMachine")
    assert len(machines) >= 3, "labeling, training and edge deployment state machines"
    assert substitution_problems(original["Resources"], REPO_ROOT) == []


def test_substitution_rule_catches_an_uncovered_placeholder(tmp_path: Path) -> None:
    (tmp_path / "m.asl.json").write_text('{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Fn}"}}}')
    bad = {"Sm": {"Type": "AWS::Serverless::StateMachine", "Properties": {"DefinitionUri": "m.asl.json"}}}
    assert substitution_problems(bad, tmp_path) == ["Sm: m.asl.json uses ['Fn'] without DefinitionSubstitutions"]


# --------------------------------------------------------------------------------------------- code


def handler_problems(resources: dict[str, Any], globals_fn: dict[str, Any], root: Path) -> list[str]:
    problems = []
    for name, fn in _of_type(resources, "AWS::Serverless::Function").items():
        props = fn.get("Properties", {})
        code_uri = props.get("CodeUri", globals_fn.get("CodeUri"))
        handler = props.get("Handler", globals_fn.get("Handler"))
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            problems.append(f"{name}: CodeUri/Handler are not a directory and module.function")
            continue
        module, function = handler.rsplit(".", 1)
        path = root / code_uri / (module.replace(".", "/") + ".py")
        if not path.is_file():
            problems.append(f"{name}: {path.relative_to(root)} does not exist")
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        if function not in defined:
            problems.append(f"{name}: {path.relative_to(root)} defines no {function}")
    return problems


def test_every_function_handler_exists(original) -> None:
    globals_fn = original.get("Globals", {}).get("Function", {})
    assert handler_problems(original["Resources"], globals_fn, REPO_ROOT) == []


def test_handler_rule_catches_missing_module_and_function(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def other(event, context):\n    return None\n")
    bad = {
        "A": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "fn/", "Handler": "app.lambda_handler"}},
        "B": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "nope/", "Handler": "app.h"}},
    }
    assert handler_problems(bad, {}, tmp_path) == [
        "A: fn/app.py defines no lambda_handler",
        "B: nope/app.py does not exist",
    ]


# --------------------------------------------------------------------------------------------- suppressions


def suppression_problems(resources: dict[str, Any], template_text: str) -> list[str]:
    """Every checkov skip has a real comment; every cfn-lint ignore carries its reason on the same line."""
    problems = []
    for name, res in resources.items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            if not re.fullmatch(r"CKV2?_[A-Z]+_\d+", str(skip.get("id", ""))):
                problems.append(f"{name}: checkov skip without a check id: {skip}")
            if len(str(skip.get("comment", "")).split()) < 4:
                problems.append(f"{name}: checkov skip {skip.get('id')} has no reason")
    lines = template_text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "ignore_checks:":
            continue
        indent = len(line) - len(line.lstrip())
        for item in lines[i + 1 :]:
            if not item.strip() or len(item) - len(item.lstrip()) <= indent:
                break
            if "#" not in item or len(item.split("#", 1)[1].split()) < 4:
                problems.append(f"line {lines.index(item) + 1}: cfn-lint ignore without a reason: {item.strip()}")
    return problems


def test_every_suppression_carries_its_reason(original) -> None:
    skipped = [
        s for r in original["Resources"].values() for s in r.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skipped, "the template documents its checkov exceptions"
    assert suppression_problems(original["Resources"], TEMPLATE.read_text()) == []


def test_suppression_rule_catches_bare_skips() -> None:
    resources = {"R": {"Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_1"}, {"comment": "x y z w"}]}}}}
    text = "R:\n  Metadata:\n    cfn-lint:\n      config:\n        ignore_checks:\n          - E1234\nS:\n"
    assert suppression_problems(resources, text) == [
        "R: checkov skip CKV_AWS_1 has no reason",
        "R: checkov skip without a check id: {'comment': 'x y z w'}",
        "line 6: cfn-lint ignore without a reason: - E1234",
    ]
