"""Stand-ins for the AWS services moto lacks. Add a stand-in by listing its "module:Class" here."""

from __future__ import annotations

import importlib

from loupe_local.standins.base import AwsRequest, Response, StandIn, StandInHost, error

STANDINS: list[str] = [
    "loupe_local.standins.groundtruth.service:GroundTruth",
    "loupe_local.standins.featurestore:FeatureStoreRuntime",
    "loupe_local.standins.greengrass.service:GreengrassStandIn",
    "loupe_local.standins.modelregistry:ModelRegistryObserver",
    "loupe_local.standins.pipelines.service:PipelineExecutions",
    "loupe_local.standins.account_quotas:AccountQuotas",
    "loupe_local.standins.httpapi.service:HttpApis",
    "loupe_local.standins.cognito.service:CognitoFlows",
    "loupe_local.standins.cloudformation:CustomResourceResponses",
    "loupe_local.standins.credentials_provider:CredentialsProvider",
]


def load_all() -> list[StandIn]:
    found = []
    for spec in STANDINS:
        module_name, _, class_name = spec.partition(":")
        found.append(getattr(importlib.import_module(module_name), class_name)())
    return found


__all__ = ["STANDINS", "AwsRequest", "Response", "StandIn", "StandInHost", "error", "load_all"]
