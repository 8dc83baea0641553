"""The Ground Truth stand-in's worker browser: where it loads input images from, and S3's CORS check of that load.

The worker's browser loads each image straight from S3, from the worker portal's origin, so Ground Truth needs a CORS
rule on every bucket that holds input images; without one "labeling tasks for those input data objects will fail"
(https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html). :class:`Browser` evaluates each input bucket's
CORS configuration (GetBucketCors) for a GET from the workers' origin, as S3 does for their browsers, and refuses the
objects of a bucket that does not allow it (:class:`CorsRefused`, naming the bucket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from loupe import manifests

CORS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html"
# Amazon Mechanical Turk: the public workforce's workteam lives in this AWS account in every region.
PUBLIC_CROWD_ACCOUNT = "394669845002"
MTURK_WORKER_ORIGIN = "https://worker.mturk.com"
LOCAL_WORKTEAM = "loupe-local"


def worker_origin(workteam_arn: str, region: str) -> str:
    """The origin the workers' browsers load images from: MTurk's worker site for the public workforce, the
    labeling portal (``https://<subdomain>.labeling.<region>.sagemaker.aws``) for a private or vendor workteam.
    AWS gives the portal a generated subdomain; the local one is named after the workteam."""
    if f":{PUBLIC_CROWD_ACCOUNT}:workteam/public-crowd/" in workteam_arn:
        return MTURK_WORKER_ORIGIN
    team = workteam_arn.rsplit("/", 1)[-1].lower() or LOCAL_WORKTEAM
    return f"https://{re.sub(r'[^a-z0-9-]', '-', team)}.labeling.{region}.sagemaker.aws"


def _origin_matches(allowed: str, origin: str) -> bool:
    """S3's AllowedOrigin match: exact, or with its (at most one) ``*`` wildcard standing for any characters."""
    if "*" not in allowed:
        return allowed == origin
    head, _, tail = allowed.partition("*")
    return len(origin) >= len(head) + len(tail) and origin.startswith(head) and origin.endswith(tail)


def _cors_allows_get(s3: Any, bucket: str, origin: str) -> bool:
    """Whether a CORS rule of the bucket matches a GET from ``origin`` (the rule S3 applies to the browser's
    request: https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html). No configuration: no rule."""
    try:
        rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchCORSConfiguration":
            return False
        raise
    return any(
        "GET" in rule.get("AllowedMethods", []) and any(_origin_matches(o, origin) for o in rule["AllowedOrigins"])
        for rule in rules
    )


class CorsRefused(Exception):
    """S3 did not let the worker portal's origin read an input image."""


@dataclass
class Browser:
    """What a worker's browser needs to load the job's images: S3, the portal's origin, each bucket's CORS answer."""

    s3: Any
    origin: str
    cors_by_bucket: dict[str, bool] = field(default_factory=dict)
    # how the CORS rules are read: S3 applies them to the browser's request itself, no principal calls
    # GetBucketCors (the local AWS's own client); ``s3`` (the job role's) signs the object GETs
    cors_reader: Any = None

    def load(self, ref: str) -> bytes:
        """The image as the worker's browser gets it, or :class:`CorsRefused` when the bucket's CORS
        configuration does not let the portal's origin GET it."""
        bucket, key = manifests.split_s3_uri(ref)
        if bucket not in self.cors_by_bucket:
            self.cors_by_bucket[bucket] = _cors_allows_get(self.cors_reader or self.s3, bucket, self.origin)
        if not self.cors_by_bucket[bucket]:
            raise CorsRefused(
                f"ClientError: the worker's browser cannot load {ref}: bucket {bucket} has no CORS rule that "
                f"allows GET from {self.origin} (see {CORS_DOC})"
            )
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
