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


def template_table_properties(logical_id: str) -> dict[str, Any]:
    """The key schema, attributes, indexes and billing mode template.yaml gives table ``logical_id`` (its
    intrinsic functions read as null), for a moto table shaped like the stack's."""
    from pathlib import Path

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template_path = Path(__file__).resolve().parents[2] / "template.yaml"
    template = yaml.load(template_path.read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    props = template["Resources"][logical_id]["Properties"]
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    return {k: props[k] for k in keys if k in props}
