"""The device side of the IoT credentials provider, and the local proof of a device's certificate.

In AWS a core device asks the credentials provider (``https://<prefix>.credentials.iot.<region>.amazonaws.com/
role-aliases/<alias>/credentials``, HTTP GET, header ``x-amzn-iot-thingname``) for temporary credentials of the role
its role alias names, and proves who it is with its X.509 certificate in the TLS handshake (mutual TLS): IoT
developer guide, "Authorizing direct calls to AWS services using AWS IoT Core credential provider". The answer is
``{"credentials": {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}}``.

Local difference: the local endpoint is plain HTTP on loopback, so there is no TLS handshake to present the
certificate in. The device names its certificate (``x-loupe-certificate-id``) and proves it holds the certificate's
private key by signing the request with it (RSA PKCS#1 v1.5, SHA-256) over the method, the path, the Host, the thing
name and the time (``x-loupe-date``, refused when more than 5 minutes off, so a captured request stops working).
The provider verifies the signature with the public key of the certificate as IoT registered it
(``standins/credentials_provider.py``); everything after that is checked as AWS checks it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

THING_HEADER = "x-amzn-iot-thingname"
CERTIFICATE_HEADER = "x-loupe-certificate-id"
DATE_HEADER = "x-loupe-date"
SIGNATURE_HEADER = "x-loupe-certificate-signature"
MAX_SKEW_SECONDS = 5 * 60


class CredentialsRefused(RuntimeError):
    """The credentials provider refused: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"credentials provider refused ({status}): {message}")
        self.status = status
        self.message = message


def credentials_path(role_alias: str) -> str:
    return f"/role-aliases/{quote(role_alias, safe='')}/credentials"


def string_to_sign(method: str, path: str, host: str, thing: str, date: str) -> bytes:
    return "\n".join(["LOUPE-IOT-CERTIFICATE-PROOF", method.upper(), path, host.lower(), thing, date]).encode()


def sign(private_key_pem: str, message: bytes) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the device's private key is not an RSA key")
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(certificate_pem: str, message: bytes, signature: str) -> bool:
    """Whether ``signature`` over ``message`` was made with the private key of ``certificate_pem``."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        public = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            return False
        public.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_stamp(value: str) -> float:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class DeviceIdentity:
    """A core device's certificate (its IoT certificate id) and private key, and the role alias it asks for."""

    thing: str
    certificate_id: str
    private_key_pem: str
    role_alias: str

    def request_headers(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        date = now_stamp()
        message = string_to_sign("GET", parts.path, parts.netloc, self.thing, date)
        return {
            THING_HEADER: self.thing,
            CERTIFICATE_HEADER: self.certificate_id,
            DATE_HEADER: date,
            SIGNATURE_HEADER: sign(self.private_key_pem, message),
        }

    def fetch(self, endpoint: str, timeout: float = 10.0) -> dict[str, Any]:
        """The credentials provider's ``credentials`` object: accessKeyId, secretAccessKey, sessionToken,
        expiration (ISO 8601). :class:`CredentialsRefused` when it refuses."""
        url = endpoint.rstrip("/") + credentials_path(self.role_alias)
        req = urllib.request.Request(url, headers=self.request_headers(url), method="GET")  # noqa: S310 - local
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the local endpoint
                return json.loads(resp.read())["credentials"]
        except urllib.error.HTTPError as exc:
            try:
                message = str(json.loads(exc.read() or b"{}").get("message", ""))
            except ValueError:
                message = ""
            raise CredentialsRefused(exc.code, message or exc.reason) from exc


def expiry_epoch(credentials: dict[str, Any]) -> float:
    value = str(credentials.get("expiration", ""))
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


# refresh what is left of a credential at 15 minutes, botocore's advisory refresh time for refreshable credentials
# (its mandatory one is 10 minutes): a credential handed on is never one botocore would refuse as about to expire
REFRESH_BEFORE_SECONDS = 15 * 60


class CredentialCache:
    """The device's current credentials from the provider, fetched again when less than 15 minutes are left (the
    nucleus' own S3 calls and the token exchange service share it, as Greengrass' TES caches them)."""

    def __init__(self, identity: DeviceIdentity, endpoint: str) -> None:
        self.identity = identity
        self.endpoint = endpoint
        self._current: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def current(self) -> dict[str, Any]:
        with self._lock:
            if self._current is None or expiry_epoch(self._current) - time.time() < REFRESH_BEFORE_SECONDS:
                self._current = self.identity.fetch(self.endpoint)
                self.fetches += 1
            return dict(self._current)

    def session(self, region: str) -> Any:
        """A boto3 session signing with these credentials (botocore's ``RefreshableCredentials`` asks the cache
        again before they expire)."""
        import boto3
        import botocore.session
        from botocore.credentials import RefreshableCredentials

        def metadata() -> dict[str, str]:
            creds = self.current()
            return {
                "access_key": creds["accessKeyId"],
                "secret_key": creds["secretAccessKey"],
                "token": creds["sessionToken"],
                "expiry_time": creds["expiration"],
            }

        refreshable = RefreshableCredentials.create_from_metadata(
            metadata=metadata(), refresh_using=metadata, method="iot-credentials-provider"
        )
        core = botocore.session.get_session()
        core._credentials = refreshable  # noqa: SLF001 - a botocore session holding refreshable credentials
        core.set_config_variable("region", region)
        return boto3.Session(botocore_session=core)
