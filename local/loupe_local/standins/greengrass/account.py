"""The account's Greengrass service role: ``/greengrass/servicerole`` (GET, PUT, DELETE).

Greengrass V2 (``greengrassv2``) and V1 (``greengrass``) share this resource and its wire names (``RoleArn``,
``AssociatedAt``; https://docs.aws.amazon.com/greengrass/v2/APIReference/API_GetServiceRoleForAccount.html).
A local account starts with no role associated, as an AWS account does until someone associates one (the
Greengrass console offers to when it first sets up a core device). The API reference documents no error for
GetServiceRoleForAccount other than InternalServerException: with no association it answers 200 without a
``RoleArn``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from loupe_local.standins.base import AwsRequest, Response, error

PATH = "/greengrass/servicerole"
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


class ServiceRoleAssociation:
    def __init__(self) -> None:
        self.association: dict[str, Any] | None = None

    def answer(self, request: AwsRequest) -> Response:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if request.method == "GET":
            return Response(200, dict(self.association or {}))
        if request.method == "PUT":
            role_arn = str(request.json().get("RoleArn") or "")
            if not _ROLE_ARN.fullmatch(role_arn):
                return error("ValidationException", f"RoleArn {role_arn!r} is not an IAM role ARN")
            self.association = {"RoleArn": role_arn, "AssociatedAt": now}
            return Response(200, {"AssociatedAt": now})
        if request.method == "DELETE":
            self.association = None
            return Response(200, {"DisassociatedAt": now})
        return error("NotImplemented", f"{request.method} {PATH}", 501)
