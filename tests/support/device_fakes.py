"""What a local core device reads and is driven by in unit tests: a fake greengrassv2 holding recipes, small
shell-component recipes, and ``deploy`` (apply a deployment, return its final status and reason)."""

from __future__ import annotations

import json
from typing import Any

ARN = "arn:aws:greengrass:us-east-1:123456789012:components:{}".format


class FakeControlPlane:
    """A device's control plane in unit tests: ``gg`` holds the recipes, the local protocol's calls are recorded in
    ``reports`` as (path, status, reason); no S3 (components without artifacts), no IoT."""

    def __init__(self, gg: FakeGG | None = None) -> None:
        self.gg = gg or FakeGG()
        self.s3: Any = None
        self.reports: list[tuple[str, str, str]] = []

    def register(self, thing: str, thing_group: str) -> None:
        return None

    def post(self, thing: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.reports.append((path, body.get("status", ""), body.get("reason", "")))
        return {}


class FakeGG:
    """The part of greengrassv2 a device reads: component versions and their recipes."""

    def __init__(self) -> None:
        self.recipes: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, recipe: dict[str, Any]) -> None:
        self.recipes[(recipe["ComponentName"], recipe["ComponentVersion"])] = recipe

    def list_components(self, **_: Any) -> dict[str, Any]:
        names = sorted({n for n, _ in self.recipes})
        return {"components": [{"componentName": n, "arn": ARN(n)} for n in names]}

    def list_component_versions(self, arn: str, **_: Any) -> dict[str, Any]:
        name = arn.rsplit(":", 1)[-1]
        return {
            "componentVersions": [
                {"componentName": n, "componentVersion": v, "arn": f"{ARN(n)}:versions:{v}"}
                for n, v in self.recipes
                if n == name
            ]
        }

    def get_component(self, arn: str, **_: Any) -> dict[str, Any]:
        _, name, _, version = arn.rsplit(":", 3)
        return {"recipe": json.dumps(self.recipes[(name, version)]).encode()}

    def describe_component(self, arn: str) -> dict[str, Any]:
        return {"status": {"componentState": "DEPLOYABLE"}}


class PublicGG(FakeGG):
    """A fake greengrassv2 that also holds the public components the local Greengrass stand-in serves."""

    def __init__(self) -> None:
        super().__init__()
        from loupe_local.standins.greengrass.components import public_catalogue

        for versions in public_catalogue("us-east-1").values():
            for rec in versions.values():
                self.add(rec["recipe"])


def recipe(name: str, version: str, lifecycle: dict[str, Any], deps: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDependencies": deps or {},
        "ComponentConfiguration": {"DefaultConfiguration": {"version": version}},
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": lifecycle}],
    }


# The data component's Install writes its version where the app can read it; no Run (FINISHED).
def data(version: str) -> dict[str, Any]:
    return recipe("data", version, {"Install": "echo {configuration:/version} > {work:path}/current"})


def deploy(dev: Any, dep_id: str, components: dict[str, str], **policies: Any) -> tuple[str, str]:
    dev.apply(
        {
            "deploymentId": dep_id,
            # the version a component's configuration carries is merged, as Loupe's workflow sends
            # com.loupe.model's values: a new version alone keeps the device's configuration (Greengrass)
            "components": {
                n: {"componentVersion": v, "configurationUpdate": {"merge": json.dumps({"version": v})}}
                for n, v in components.items()
            },
            "deploymentPolicies": {"failureHandlingPolicy": "ROLLBACK", **policies},
        }
    )
    final = [r for r in dev.control.reports if r[0] == f"/deployments/{dep_id}/status" and r[1] != "IN_PROGRESS"]
    return final[-1][1], final[-1][2]
