"""Where a custom resource's provider answers CloudFormation: the presigned ``ResponseURL`` of a request.

CloudFormation hands the provider (the ``ServiceToken`` function) a presigned S3 URL, and waits for one JSON
object to be PUT there (CloudFormation User Guide, "Custom resource request objects" -> ResponseURL: "The response
URL identifies a presigned S3 bucket that receives responses from the custom resource provider"; "Custom resource
response objects"). Locally the URL is presigned the same way (SigV4 query authentication, with the run's key and
an expiry, checked by the gateway like any presigned URL) for a path under :data:`RESPONSE_BUCKET` that only this
stand-in answers: one PUT per expected request is accepted and kept; any other PUT (a second answer, an unknown
request, an expired or tampered URL: the gateway refuses those) is refused with S3's ``AccessDenied``. What the
body means is decided by :mod:`loupe_local.host.custom_resources`, as CloudFormation reads the object after the PUT.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any
from urllib.parse import unquote

from loupe_local.standins.base import AwsRequest, Response, StandIn

# the bucket of CloudFormation's response URLs (one per region in AWS: cloudformation-custom-resource-response-
# <region without dashes>); locally no moto bucket has this name, the stand-in claims its path
RESPONSE_BUCKET = "cloudformation-custom-resource-response-local"


def _s3_error(code: str, message: str, status: int) -> Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    ).encode()
    return Response(status=status, body=body, headers={"Content-Type": "application/xml"})


class CustomResourceResponses(StandIn):
    name = "cloudformation-responses"

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._expected: set[str] = set()
        self._answers: dict[str, bytes] = {}

    def expect(self, key: str) -> None:
        """Accept one PUT at ``/<RESPONSE_BUCKET>/<key>`` from now on."""
        with self._lock:
            self._expected.add(key)

    def wait(self, key: str, timeout: float) -> bytes | None:
        """The body PUT for ``key``, or None when none came within ``timeout`` seconds; ``key`` is forgotten."""
        with self._lock:
            self._lock.wait_for(lambda: key in self._answers, timeout=timeout)
            self._expected.discard(key)
            return self._answers.pop(key, None)

    def handles(self, request: AwsRequest) -> bool:
        return request.path.startswith(f"/{RESPONSE_BUCKET}/")

    def handle(self, request: AwsRequest) -> Response:
        if request.method != "PUT":
            return _s3_error("MethodNotAllowed", "The specified method is not allowed against this resource.", 405)
        key = unquote(request.path[len(RESPONSE_BUCKET) + 2 :])
        with self._lock:
            if key not in self._expected or key in self._answers:
                return _s3_error("AccessDenied", "Access Denied", 403)
            self._expected.discard(key)
            self._answers[key] = request.body
            self._lock.notify_all()
        return Response(status=200, body=b"", headers={"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})  # noqa: S324 - S3's ETag

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"waiting": len(self._expected)}
