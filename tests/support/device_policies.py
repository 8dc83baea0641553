"""Core-device IoT policies for the tests: the stack's (template.yaml EdgeDevicePolicy, resolved as the local
provisioner resolves it) and the thing-variable policy it replaced (what a regression looks like)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loupe_local.host.mqtt_policy import CoreDevicePolicy
from loupe_local.template import ACCOUNT_ID, Resolver, load_yaml

ROOT = Path(__file__).resolve().parents[2]
ARN = f"arn:aws:iot:us-east-1:{ACCOUNT_ID}:"

# The statements the stack attached before, resolved for the local account: thing policy variables, which IoT Core
# does not resolve for Greengrass core devices.
THING_VARIABLE_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": [
                f"{ARN}client/${{iot:Connection.Thing.ThingName}}",
                f"{ARN}client/${{iot:Connection.Thing.ThingName}}#*",
            ],
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        },
        {
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": [
                f"{ARN}topic/loupe/${{iot:Connection.Thing.ThingName}}/*",
                f"{ARN}topic/$aws/things/${{iot:Connection.Thing.ThingName}}/*",
            ],
        },
        {"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate", "Resource": f"{ARN}rolealias/stk-edge"},
    ],
}


def stack_policy(parameters: dict[str, Any] | None = None) -> CoreDevicePolicy:
    """template.yaml's EdgeDevicePolicy for stack ``stk`` in us-east-1 (``parameters`` as a deploy gives them)."""
    template = load_yaml(ROOT / "template.yaml")

    def no_resource(*args: Any) -> Any:
        raise AssertionError(f"the device policy references a resource: {args}")

    resolver = Resolver(template, parameters or {"WorkteamArn": "x"}, "stk", "us-east-1", no_resource, no_resource)
    document = resolver.resolve(template["Resources"]["EdgeDevicePolicy"]["Properties"]["PolicyDocument"])
    return CoreDevicePolicy(document, ARN)


def thing_variable_policy() -> CoreDevicePolicy:
    return CoreDevicePolicy(THING_VARIABLE_POLICY, ARN)
