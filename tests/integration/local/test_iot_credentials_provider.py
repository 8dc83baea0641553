"""The local IoT credentials provider (``GET /role-aliases/<alias>/credentials``): a core device's certificate is
exchanged for credentials of the token exchange role, checked as AWS checks it, and the role's policy sees the
device's thing name (``${credentials-iot:ThingName}``).

Each device here is a thing with its own certificate from moto's IoT, attached as the local devices attach theirs
(``LocalControlPlane``). The provider is called over HTTP with the certificate's proof, as a device calls it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support.iam_gate import usage
from support.waiting import wait_until

from loupe_local.iot_credentials import CredentialsRefused, DeviceIdentity, expiry_epoch

pytestmark = pytest.mark.integration


@pytest.fixture
def enforced(local_aws: Any) -> Iterator[Any]:
    before = local_aws.iam_mode
    local_aws.set_iam("enforce")
    try:
        yield local_aws
    finally:
        local_aws.set_iam(before)


def new_device(rt: Any, policy: str | None = None, thing: str | None = None) -> DeviceIdentity:
    """A thing with an ACTIVE certificate attached to it and to ``policy`` (the stack's core-device policy)."""
    iot = rt.client("iot")
    thing = thing or f"loupe-device-tes-{uuid.uuid4().hex[:8]}"
    iot.create_thing(thingName=thing)
    out = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName=thing, principal=out["certificateArn"])
    iot.attach_policy(policyName=policy or rt.physical("EdgeDevicePolicy"), target=out["certificateArn"])
    alias = rt.physical("GreengrassTokenExchangeRoleAlias")
    return DeviceIdentity(thing, out["certificateId"], out["keyPair"]["PrivateKey"], alias)


def s3_as(rt: Any, creds: dict[str, Any]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=rt.endpoint,
        region_name=rt.region,
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.mark.iam_would_deny  # the upload under another thing's prefix is refused on purpose
def test_a_certificate_gets_the_token_exchange_role_fenced_to_its_own_thing(enforced: Any) -> None:
    rt = enforced
    device = new_device(rt)
    other = f"loupe-device-other-{uuid.uuid4().hex[:6]}"
    started = time.time()
    creds = device.fetch(rt.endpoint)
    # the role alias' CredentialDurationSeconds (3600 in template.yaml)
    assert 3500 < expiry_epoch(creds) - started <= 3610
    s3 = s3_as(rt, creds)
    bucket = rt.physical("RawBucket")
    own = f"raw/feedback/{device.thing}/{uuid.uuid4().hex}.png"
    s3.put_object(Bucket=bucket, Key=own, Body=b"frame")
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=bucket, Key=f"raw/feedback/{other}/{uuid.uuid4().hex}.png", Body=b"frame")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert rt.client("s3").get_object(Bucket=bucket, Key=own)["Body"].read() == b"frame"

    role = rt.physical("GreengrassTokenExchangeRole")
    lines = wait_until(
        lambda: (
            [r for r in usage(rt) if r["action"] == "s3:PutObject" and device.certificate_id in r["principal"]] or None
        ),
        10,
    )
    assert lines and {r["role"] for r in lines} == {role}
    decisions = {r["resources"][0].rsplit("/", 2)[-2]: r["decision"] for r in lines}
    assert decisions == {device.thing: "Allow", other: "ImplicitDeny"}
    # the session is the certificate's: assumed-role/<role>/<certificate id>
    assert lines[0]["principal"].endswith(f":assumed-role/{role}/{device.certificate_id}")


def _refused(rt: Any, device: DeviceIdentity) -> CredentialsRefused:
    with pytest.raises(CredentialsRefused) as refused:
        device.fetch(rt.endpoint)
    return refused.value


def test_a_certificate_whose_policy_does_not_allow_the_role_alias_gets_nothing(local_aws: Any) -> None:
    rt = local_aws
    iot = rt.client("iot")
    name = f"tes-no-assume-{uuid.uuid4().hex[:6]}"
    arn = f"arn:aws:iot:{rt.region}:{rt.arn('EdgeDevicePolicy').split(':')[4]}:client/loupe-device-*"
    iot.create_policy(
        policyName=name,
        policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": arn}]}
        ),
    )
    refusal = _refused(rt, new_device(rt, policy=name))
    assert (refusal.status, refusal.message) == (403, "Access Denied")


def test_an_inactive_certificate_gets_nothing(local_aws: Any) -> None:
    rt = local_aws
    device = new_device(rt)
    device.fetch(rt.endpoint)  # active: it does
    rt.client("iot").update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE")
    refusal = _refused(rt, device)
    assert (refusal.status, refusal.message) == (403, "Certificate is invalid on this endpoint")


def test_a_thing_name_not_attached_to_the_certificate_gets_nothing(local_aws: Any) -> None:
    rt = local_aws
    device = new_device(rt)
    victim = new_device(rt)
    # the device asks as the other thing (to write under its prefix): that thing is not attached to its certificate
    impostor = DeviceIdentity(victim.thing, device.certificate_id, device.private_key_pem, device.role_alias)
    refusal = _refused(rt, impostor)
    assert (refusal.status, refusal.message) == (403, "Access Denied")


def test_a_request_not_signed_with_the_certificate_key_gets_nothing(local_aws: Any) -> None:
    rt = local_aws
    device = new_device(rt)
    thief = new_device(rt)
    # the certificate id is not a secret: without its private key it proves nothing
    forged = DeviceIdentity(device.thing, device.certificate_id, thief.private_key_pem, device.role_alias)
    refusal = _refused(rt, forged)
    assert (refusal.status, refusal.message) == (403, "Certificate is invalid on this endpoint")


def test_an_unknown_role_alias_and_a_role_that_does_not_trust_the_provider_get_nothing(local_aws: Any) -> None:
    rt = local_aws
    device = new_device(rt)
    missing = DeviceIdentity(device.thing, device.certificate_id, device.private_key_pem, "no-such-alias")
    assert _refused(rt, missing).status == 404

    iam, iot = rt.client("iam"), rt.client("iot")
    role_name = f"tes-untrusting-{uuid.uuid4().hex[:6]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    alias = f"tes-untrusting-{uuid.uuid4().hex[:6]}"
    alias_arn = iot.create_role_alias(roleAlias=alias, roleArn=role_arn, credentialDurationSeconds=900)["roleAliasArn"]
    policy = f"tes-assume-{uuid.uuid4().hex[:6]}"
    iot.create_policy(
        policyName=policy,
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate", "Resource": alias_arn}],
            }
        ),
    )
    trusting = new_device(rt, policy=policy)
    untrusted = DeviceIdentity(trusting.thing, trusting.certificate_id, trusting.private_key_pem, alias)
    refusal = _refused(rt, untrusted)
    assert (refusal.status, refusal.message) == (403, "Unable to assume the role, or the role to assume does not exist")
