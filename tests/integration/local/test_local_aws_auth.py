"""Who the local AWS answers: the run's signed credential from a loopback Host, never a web page.

Each test replays an attack on the running local AWS over real HTTP (a page's cross-origin request, a DNS-rebound
Host name, unsigned, wrongly signed and other-key requests, tampered presigned URLs) and checks the refusal is
the AWS error the service's SDK knows.
"""

from __future__ import annotations

import json
import stat
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support.raw_http import raw
from support.waiting import wait_until

from loupe_local.local_auth import RunCredentials, sign_request

pytestmark = pytest.mark.integration

EVIL = "https://evil.example"


def signed(rt: Any, method: str, path: str, service: str, body: bytes = b"", **headers: str) -> dict[str, str]:
    return sign_request(rt.credentials, method, rt.endpoint + path, service, rt.region, body, headers)


def client_with(rt: Any, service: str, key: str, secret: str, signature_version: str | None = None) -> Any:
    config = Config(retries={"max_attempts": 1}, signature_version=signature_version)
    return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=rt.region).client(
        service, endpoint_url=rt.endpoint, config=config
    )


def error_code(call: Any) -> str:
    with pytest.raises(ClientError) as info:
        call()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403), info.value.response
    return info.value.response["Error"]["Code"]


def test_a_signed_request_from_a_web_page_is_refused_without_cors_headers(local_aws) -> None:
    bucket = local_aws.physical("RawBucket")
    path = f"/{bucket}?list-type=2"
    ok = raw(local_aws, "GET", path, signed(local_aws, "GET", path, "s3"))
    assert ok.status == 200, ok.data
    # the same request sent by a browser from another site carries its Origin: refused, and nothing grants CORS
    page = raw(local_aws, "GET", path, {**signed(local_aws, "GET", path, "s3"), "Origin": EVIL})
    assert page.status == 403
    assert b"<Code>AccessDenied</Code>" in page.data
    assert not [h for h in page.getheaders() if h[0].lower().startswith("access-control-")]
    preflight = raw(
        local_aws,
        "OPTIONS",
        f"/{bucket}/x",
        {"Origin": EVIL, "Access-Control-Request-Method": "PUT"},
    )
    assert preflight.status == 403
    assert not [h for h in preflight.getheaders() if h[0].lower().startswith("access-control-")]


def test_moto_itself_grants_no_cors_to_a_signed_request(local_aws) -> None:
    """Without an Origin the gateway passes the request to moto: its answer carries no CORS grant either."""
    path = "/"
    resp = raw(local_aws, "GET", path, signed(local_aws, "GET", path, "s3"))
    assert resp.status == 200
    assert not [h for h in resp.getheaders() if h[0].lower().startswith("access-control-")]


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}", "localhost"])
def test_a_foreign_host_is_refused_even_when_signed_for_it(local_aws, host: str) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends its own Host."""
    host = host.format(port=local_aws.port)
    path = "/"
    headers = sign_request(local_aws.credentials, "GET", f"http://{host}{path}", "s3", local_aws.region)
    resp = raw(local_aws, "GET", path, {**headers, "Host": host})
    assert resp.status == 403
    assert b"<Code>AccessDenied</Code>" in resp.data and b"is not this local AWS" in resp.data


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_loopback_hosts_with_the_servers_port_are_answered(local_aws, host: str) -> None:
    host = host.format(port=local_aws.port)
    headers = sign_request(local_aws.credentials, "GET", f"http://{host}/", "s3", local_aws.region)
    resp = raw(local_aws, "GET", "/", {**headers, "Host": host})
    assert resp.status == 200, resp.data


def test_unsigned_requests_are_refused_in_each_protocols_error_shape(local_aws) -> None:
    bucket = local_aws.physical("RawBucket")
    s3 = raw(local_aws, "GET", f"/{bucket}/anything")
    assert s3.status == 403 and b"<Error><Code>AccessDenied</Code>" in s3.data
    dynamodb = raw(
        local_aws,
        "POST",
        "/",
        {"X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0"},
        b"{}",
    )
    assert dynamodb.status == 403 and json.loads(dynamodb.data)["__type"] == "MissingAuthenticationToken"
    sns = raw(
        local_aws,
        "POST",
        "/",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"Action=ListTopics&Version=2010-03-31",
    )
    assert (
        sns.status == 403 and b"<ErrorResponse><Error><Type>Sender</Type><Code>MissingAuthenticationToken" in sns.data
    )


@pytest.mark.parametrize(
    ("service", "call", "wrong_key"),
    [
        ("s3", lambda c: c.list_buckets(), "InvalidAccessKeyId"),
        ("dynamodb", lambda c: c.list_tables(), "InvalidClientTokenId"),
        ("sns", lambda c: c.list_topics(), "InvalidClientTokenId"),
        ("lambda", lambda c: c.list_functions(), "InvalidClientTokenId"),
        ("sagemaker", lambda c: c.list_model_packages(ModelPackageGroupName="loupe-models"), "InvalidClientTokenId"),
        ("cloudwatch", lambda c: c.describe_alarms(), "InvalidClientTokenId"),
    ],
)
def test_another_key_or_a_wrong_secret_is_refused_as_aws_does(
    local_aws, service: str, call: Any, wrong_key: str
) -> None:
    creds = local_aws.credentials
    assert error_code(
        lambda: call(client_with(local_aws, service, "AKIAOTHERKEY00000000", creds.secret_access_key))
    ) == (wrong_key)
    assert error_code(lambda: call(client_with(local_aws, service, "local", "local"))) == wrong_key
    wrong_secret = client_with(local_aws, service, creds.access_key_id, creds.secret_access_key + "x")
    assert error_code(lambda: call(wrong_secret)) == "SignatureDoesNotMatch"
    call(client_with(local_aws, service, creds.access_key_id, creds.secret_access_key))  # the run's key: answered


def test_a_body_changed_after_signing_is_refused(local_aws) -> None:
    body = json.dumps({"Limit": 1}).encode()
    headers = signed(
        local_aws,
        "POST",
        "/",
        "dynamodb",
        body,
        **{"X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0"},
    )
    assert raw(local_aws, "POST", "/", headers, body).status == 200
    tampered = raw(local_aws, "POST", "/", headers, json.dumps({"Limit": 99}).encode())
    assert tampered.status == 403 and json.loads(tampered.data)["__type"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_presigned_urls_with_the_runs_key_work_and_tampered_ones_fail(local_aws, version: str) -> None:
    """SigV4 (X-Amz-Credential/X-Amz-Signature) and SigV2 (AWSAccessKeyId/Signature: boto3's default for S3)."""
    creds = local_aws.credentials
    presigner = client_with(local_aws, "s3", creds.access_key_id, creds.secret_access_key, version)
    s3 = local_aws.client("s3")
    bucket = local_aws.physical("ArtifactBucket")
    key = f"auth/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"secret model")
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}"
    assert ("X-Amz-Signature=" in path) == (version == "s3v4")

    ok = raw(local_aws, "GET", path)  # what an <img src> sends: no Origin on a same-site or navigation GET
    assert ok.status == 200 and ok.data == b"secret model"

    other_key = f"auth/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=bucket, Key=other_key, Body=b"other")
    expires = "X-Amz-Expires=300" if version == "s3v4" else f"Expires={parse_qs(parts.query)['Expires'][0]}"
    longer = "X-Amz-Expires=900" if version == "s3v4" else f"Expires={int(expires.split('=')[1]) + 600}"
    signature = "X-Amz-Signature=" if version == "s3v4" else "Signature="
    head, _, tail = path.partition(signature)
    for tampered in (
        path.replace(key, other_key),  # another object with the same signature
        path.replace(expires, longer),  # a longer life
        head + signature + ("A" if tail[0] != "A" else "B") + tail[1:],  # another signature
    ):
        assert tampered != path
        resp = raw(local_aws, "GET", tampered)
        assert resp.status == 403, tampered
        assert b"<Code>SignatureDoesNotMatch</Code>" in resp.data

    stranger = client_with(local_aws, "s3", "AKIAOTHERKEY00000000", "secret", version)
    foreign = urlsplit(stranger.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}))
    resp = raw(local_aws, "GET", f"{foreign.path}?{foreign.query}")
    assert resp.status == 403 and b"<Code>InvalidAccessKeyId</Code>" in resp.data


def test_an_expired_presigned_url_is_refused(local_aws) -> None:
    creds = local_aws.credentials
    s3 = client_with(local_aws, "s3", creds.access_key_id, creds.secret_access_key, "s3v4")
    bucket = local_aws.physical("ArtifactBucket")
    url = urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1))
    expired = wait_until(lambda: (r := raw(local_aws, "GET", f"{url.path}?{url.query}")).status == 403 and r, 10)
    assert expired, "a presigned URL one second old was still answered"
    assert b"Request has expired" in expired.data


def test_the_run_credential_is_fresh_and_kept_owner_only(local_aws) -> None:
    state_file = local_aws.state_dir / "local.json"
    state = json.loads(state_file.read_text())
    assert RunCredentials.from_state(state) == local_aws.credentials
    assert local_aws.credentials.access_key_id not in ("local", "testing")
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(local_aws.state_dir.stat().st_mode) == 0o700
    assert RunCredentials.generate() != RunCredentials.generate()


def test_only_the_user_pools_public_keys_and_sign_in_are_answered_unsigned(local_aws) -> None:
    pool = local_aws.physical("ConsoleUserPool")
    keys = raw(local_aws, "GET", f"/{pool}/.well-known/jwks.json")
    assert keys.status == 200 and json.loads(keys.data)["keys"], keys.data
    # the same keys asked for by a web page: refused like anything else a page asks
    assert raw(local_aws, "GET", f"/{pool}/.well-known/jwks.json", {"Origin": EVIL}).status == 403
    target = "AWSCognitoIdentityProviderService"
    body = json.dumps({"UserPoolId": pool, "Username": f"x-{uuid.uuid4().hex[:6]}@example.com"}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    # an administrator's call unsigned: refused before Cognito sees it (no user was made)
    made = raw(local_aws, "POST", "/", {**headers, "X-Amz-Target": f"{target}.AdminCreateUser"}, body)
    assert made.status == 403 and b"MissingAuthenticationToken" in made.data
    assert raw(local_aws, "POST", "/", {**headers, "X-Amz-Target": f"{target}.ListUsers"}, body).status == 403
    # sign-in, unsigned as AWS answers it: Cognito itself judges the password
    auth = json.dumps(
        {
            "ClientId": local_aws.physical("ConsoleUserPoolClient"),
            "AuthFlow": "USER_PASSWORD_AUTH",
            "AuthParameters": {"USERNAME": "nobody@example.com", "PASSWORD": "wrong"},
        }
    ).encode()
    answer = raw(local_aws, "POST", "/", {**headers, "X-Amz-Target": f"{target}.InitiateAuth"}, auth)
    assert answer.status == 400 and b"MissingAuthenticationToken" not in answer.data, answer.data
