"""A local core device's token exchange service (``device_tes``) and what its components' environment holds, and the
local proof that a credentials request comes from the holder of a certificate's private key (``iot_credentials``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loupe_local.devices.lifecycle import LifecycleRunner, ProcessEnvironment
from loupe_local.devices.recipes import Component, Layout
from loupe_local.devices.tes import TokenExchangeService
from loupe_local.iot_credentials import sign, string_to_sign, verify
from loupe_local.local_auth import RunCredentials

CREDS = {
    "accessKeyId": "ASIADEVICE",
    "secretAccessKey": "device-secret",
    "sessionToken": "device-token",
    "expiration": "2030-01-01T00:00:00Z",
}


@pytest.fixture
def tes() -> Iterator[TokenExchangeService]:
    service = TokenExchangeService(lambda: dict(CREDS)).start()
    yield service
    service.stop()


def get(url: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": token} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_service_answers_a_component_token_with_container_credentials(tes: TokenExchangeService) -> None:
    token = tes.token_for("com.loupe.inference")
    assert tes.url.startswith("http://127.0.0.1:") and tes.url.endswith("/2016-11-01/credentialprovider/")
    status, body = get(tes.url, token)
    assert status == 200
    # the container credentials shape the SDKs read (botocore ContainerProvider)
    assert body == {
        "AccessKeyId": "ASIADEVICE",
        "SecretAccessKey": "device-secret",
        "Token": "device-token",
        "Expiration": "2030-01-01T00:00:00Z",
    }


@pytest.mark.parametrize("token", [None, "", "not-a-component-token"])
def test_a_request_without_a_component_token_is_refused(tes: TokenExchangeService, token: str | None) -> None:
    tes.token_for("com.loupe.inference")
    status, body = get(tes.url, token)
    assert status == 403 and "AccessKeyId" not in body


def test_boto3_in_a_component_finds_the_credentials_by_itself(tes: TokenExchangeService, monkeypatch: Any) -> None:
    import botocore.session

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", tes.url)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", tes.token_for("com.loupe.inference"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    creds = botocore.session.get_session().get_credentials()
    assert creds is not None and creds.method == "container-role"
    assert creds.get_frozen_credentials().access_key == "ASIADEVICE"


def component(name: str, with_tes: bool) -> Component:
    deps = {"aws.greengrass.TokenExchangeService": {"VersionRequirement": ">=2.0.0"}} if with_tes else {}
    recipe = {"ComponentName": name, "ComponentVersion": "1.0.0", "ComponentDependencies": deps}
    return Component(name, "1.0.0", recipe)


def runner(tmp_path: Path, tes: TokenExchangeService | None) -> LifecycleRunner:
    env = ProcessEnvironment(
        thing="loupe-device-1",
        endpoint="http://127.0.0.1:9",
        region="us-east-1",
        credentials=RunCredentials("LOUPERUNKEY", "run-secret"),
        token_exchange=lambda: tes,
    )
    return LifecycleRunner(Layout(tmp_path), env)


def test_only_a_component_that_depends_on_the_service_gets_its_endpoint(
    tmp_path: Path, tes: TokenExchangeService, monkeypatch: Any
) -> None:
    # the device process itself holds the run's key (its parent gave it): no component may inherit it
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "LOUPERUNKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "run-secret")
    run = runner(tmp_path, tes)
    served = run.env(component("com.loupe.inference", with_tes=True), {})
    assert served["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == tes.url
    assert served["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == tes.token_for("com.loupe.inference")
    assert "AWS_ACCESS_KEY_ID" not in served and "AWS_SECRET_ACCESS_KEY" not in served
    plain = run.env(component("com.example.other", with_tes=False), {})
    assert not {k for k in plain if k.startswith(("AWS_CONTAINER_", "AWS_ACCESS_", "AWS_SECRET_", "AWS_SESSION_"))}
    # each component its own token
    assert tes.token_for("com.example.other") != served["AWS_CONTAINER_AUTHORIZATION_TOKEN"]


def test_a_device_without_a_token_exchange_service_keeps_the_run_key(tmp_path: Path) -> None:
    """A device of a stack without a role alias (and the unit tests' fake control planes): as before."""
    env = runner(tmp_path, None).env(component("com.loupe.inference", with_tes=True), {})
    assert env["AWS_ACCESS_KEY_ID"] == "LOUPERUNKEY" and "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env


def test_the_certificate_proof_binds_the_key_the_request_and_the_thing() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def pair() -> tuple[str, str]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
        import datetime

        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode()
        return cert.public_bytes(serialization.Encoding.PEM).decode(), pem_key

    cert, key = pair()
    _, other_key = pair()
    message = string_to_sign("GET", "/role-aliases/a/credentials", "127.0.0.1:1", "loupe-device-1", "20300101T000000Z")
    signature = sign(key, message)
    assert verify(cert, message, signature)
    assert not verify(cert, message, sign(other_key, message))  # another key
    as_other_thing = string_to_sign(
        "GET", "/role-aliases/a/credentials", "127.0.0.1:1", "loupe-device-2", "20300101T000000Z"
    )
    assert not verify(cert, as_other_thing, signature)  # the same proof for another thing
    assert not verify(cert, message, "bm90IGEgc2lnbmF0dXJl")


class CountingProvider:
    """Stands for the credentials provider: each fetch a new credential lasting ``lifetime`` seconds."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.calls = 0

    def fetch(self, endpoint: str) -> dict[str, Any]:
        import time
        from datetime import UTC, datetime

        self.calls += 1
        expires = datetime.fromtimestamp(time.time() + self.lifetime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {**CREDS, "accessKeyId": f"ASIA{self.calls}", "expiration": expires}


def test_the_device_fetches_again_only_when_its_credential_is_about_to_expire() -> None:
    from loupe_local.iot_credentials import CredentialCache

    lasting = CountingProvider(3600)
    cache = CredentialCache(lasting, "http://127.0.0.1:9")  # type: ignore[arg-type]
    assert cache.current()["accessKeyId"] == cache.current()["accessKeyId"] == "ASIA1"
    assert lasting.calls == 1
    # less than 15 minutes left (botocore's advisory refresh): every use fetches a fresh one before it runs out
    expiring = CountingProvider(600)
    cache = CredentialCache(expiring, "http://127.0.0.1:9")  # type: ignore[arg-type]
    assert [cache.current()["accessKeyId"] for _ in range(2)] == ["ASIA1", "ASIA2"]
