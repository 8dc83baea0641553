"""A DynamoDB table of the local stack, as a boto3 resource signed with the run's credential."""

from __future__ import annotations

from typing import Any


def stack_table(runtime: Any, logical_id: str) -> Any:
    import boto3

    creds = runtime.credentials
    session = boto3.Session(
        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key, region_name=runtime.region
    )
    return session.resource("dynamodb", endpoint_url=runtime.endpoint).Table(runtime.physical(logical_id))
