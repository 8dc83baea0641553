"""The local account's quotas: Service Quotas for ``sagemaker`` and ``lambda``, and Lambda's GetAccountSettings.

moto's Service Quotas knows only ``vpc`` and its Lambda has no ``GetAccountSettings``; ``loupe preflight`` reads
both. This stand-in answers, with the services' shapes:

- Service Quotas (JSON protocol, ``ServiceQuotasV20190624.<Op>``): ``ListServiceQuotas``, ``GetServiceQuota``,
  ``ListAWSDefaultServiceQuotas`` and ``GetAWSDefaultServiceQuota`` for the service codes ``sagemaker`` (per
  instance type: "<type> for training job usage", "<type> for spot training job usage", "<type> for processing
  job usage") and ``lambda`` ("Concurrent executions", code L-B99A9384). Other service codes go on to moto.
- Lambda ``GET /2016-08-19/account-settings``: ``AccountLimit.ConcurrentExecutions`` is the account's "Concurrent
  executions" quota and ``UnreservedConcurrentExecutions`` that quota less the reserved concurrency of the account's
  functions, read through the public API (ListFunctions, GetFunctionConcurrency), as Lambda computes it
  (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).

The local account's values are the table below (not AWS's defaults for a new account, which vary by account and
Region). AWS's quota codes are opaque identifiers; the SageMaker ones here are local (``L-`` + a hash of the name),
so a client finds a quota by its ``QuotaName``, as ``loupe preflight`` does. What an account's quota was raised or
lowered to is ``<state_dir>/service_quotas.json`` (``set_quota``), the local form of an approved quota request.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from loupe_local.standins.base import AwsRequest, Response, StandIn, error
from loupe_local.template import ACCOUNT_ID

QUOTAS_FILE = "service_quotas.json"
LAMBDA_CONCURRENCY = "Concurrent executions"
_LAMBDA_CONCURRENCY_CODE = "L-B99A9384"
_SERVICE_NAMES = {"sagemaker": "Amazon SageMaker", "lambda": "AWS Lambda"}
_SAGEMAKER_TYPES = (
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.m5.2xlarge",
    "ml.c5.xlarge",
    "ml.c5.2xlarge",
    "ml.g4dn.xlarge",
    "ml.g4dn.2xlarge",
    "ml.g5.xlarge",
    "ml.g5.2xlarge",
    "ml.p3.2xlarge",
)
_SAGEMAKER_USAGES = ("for training job usage", "for spot training job usage", "for processing job usage")
_OPERATIONS = {"ListServiceQuotas", "GetServiceQuota", "ListAWSDefaultServiceQuotas", "GetAWSDefaultServiceQuota"}
_ACCOUNT_SETTINGS = "/2016-08-19/account-settings"
# Lambda's documented per-account code storage and deployment package limits (lambda/latest/dg/gettingstarted-limits)
_CODE_LIMITS = {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800}


def _code(service: str, name: str) -> str:
    if service == "lambda" and name == LAMBDA_CONCURRENCY:
        return _LAMBDA_CONCURRENCY_CODE
    return "L-" + hashlib.sha256(f"{service}/{name}".encode()).hexdigest()[:8].upper()


def default_quotas() -> dict[str, dict[str, float]]:
    """The local account's quota values, by service code and quota name."""
    sagemaker = {f"{t} {usage}": 1.0 for t in _SAGEMAKER_TYPES for usage in _SAGEMAKER_USAGES}
    return {"sagemaker": sagemaker, "lambda": {LAMBDA_CONCURRENCY: 1000.0}}


def set_quota(state_dir: Path, service_code: str, quota_name: str, value: float | None) -> None:
    """Set the local account's applied value of one quota (``None``: back to the table's value)."""
    if service_code not in _SERVICE_NAMES or quota_name not in default_quotas()[service_code]:
        raise ValueError(f"the local account has no quota {service_code}/{quota_name!r}")
    path = Path(state_dir) / QUOTAS_FILE
    applied = json.loads(path.read_text()) if path.is_file() else {}
    service = applied.setdefault(service_code, {})
    if value is None:
        service.pop(quota_name, None)
    else:
        service[quota_name] = float(value)
    path.write_text(json.dumps(applied, indent=2))


class AccountQuotas(StandIn):
    name = "account-quotas"

    def handles(self, request: AwsRequest) -> bool:
        if request.service == "lambda":
            return request.method == "GET" and request.path.rstrip("/") == _ACCOUNT_SETTINGS
        if request.service == "servicequotas" and request.target in _OPERATIONS:
            return request.json().get("ServiceCode") in _SERVICE_NAMES
        return False

    def handle(self, request: AwsRequest) -> Response:
        if request.service == "lambda":
            return Response(body=self._account_settings())
        body = request.json()
        service = str(body["ServiceCode"])
        applied = request.target in ("ListServiceQuotas", "GetServiceQuota")
        quotas = self._quotas(service, applied)
        if request.target in ("GetServiceQuota", "GetAWSDefaultServiceQuota"):
            wanted = body.get("QuotaCode")
            for quota in quotas:
                if quota["QuotaCode"] == wanted:
                    return Response(body={"Quota": quota})
            return error("NoSuchResourceException", f"No quota {wanted} for service {service}")
        return self._page(quotas, body)

    # ------------------------------------------------------------------ Service Quotas
    def _quotas(self, service: str, applied: bool) -> list[dict[str, Any]]:
        values = dict(default_quotas()[service])
        if applied:
            values.update(self._applied().get(service, {}))
        region = self.runtime.region
        return [
            {
                "ServiceCode": service,
                "ServiceName": _SERVICE_NAMES[service],
                "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT_ID}:{service}/{_code(service, name)}",
                "QuotaCode": _code(service, name),
                "QuotaName": name,
                "Value": value,
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
            for name, value in sorted(values.items())
        ]

    def _applied(self) -> dict[str, dict[str, float]]:
        path = Path(self.runtime.state_dir) / QUOTAS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    @staticmethod
    def _page(quotas: list[dict[str, Any]], body: dict[str, Any]) -> Response:
        """One page of at most MaxResults (Service Quotas' default page is 100), NextToken for the rest."""
        size = int(body.get("MaxResults") or 100)
        token = body.get("NextToken")
        try:
            start = int(base64.b64decode(token).decode()) if token else 0
        except ValueError:
            return error("InvalidPaginationTokenException", "The NextToken is not valid")
        page: dict[str, Any] = {"Quotas": quotas[start : start + size]}
        if start + size < len(quotas):
            page["NextToken"] = base64.b64encode(str(start + size).encode()).decode()
        return Response(body=page)

    # ------------------------------------------------------------------ Lambda
    def _account_settings(self) -> dict[str, Any]:
        limit = int(dict(default_quotas()["lambda"], **self._applied().get("lambda", {}))[LAMBDA_CONCURRENCY])
        lam = self.runtime.client("lambda")
        reserved = code_size = count = 0
        for page in lam.get_paginator("list_functions").paginate():
            for fn in page["Functions"]:
                count += 1
                code_size += int(fn.get("CodeSize") or 0)
                reserved += int(
                    lam.get_function_concurrency(FunctionName=fn["FunctionName"]).get("ReservedConcurrentExecutions")
                    or 0
                )
        return {
            "AccountLimit": {
                **_CODE_LIMITS,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": max(0, limit - reserved),
            },
            "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": count},
        }
