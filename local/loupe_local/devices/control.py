"""What a local core device talks to: the Greengrass control plane (injected into ``Device``).

A real nucleus reads its deployments from IoT jobs and shadows; a local device uses the Greengrass stand-in's two
local routes instead (``standins/greengrass/devices.py``): ``sync`` (heartbeat → the deployment to run) and a
deployment's ``status``. Component recipes come from the ``greengrassv2`` API, artifacts from S3, the thing and its
group from IoT, all at the local endpoint.

With the stack's role alias (``role_alias``), the device has an identity as a Greengrass core device has: an IoT
certificate (made at registration, attached to its thing and to the stack's core-device policy, kept in its root
folder as ``thingCert.id`` + ``privKey.key``, owner-only) and credentials of the token exchange role from the IoT
credentials provider (``iot_credentials``): its S3 artifact downloads (GetBucketLocation, GetObject) sign with those,
in every IAM mode, so with ``LOUPE_LOCAL_IAM`` audit or enforce they are checked as GreengrassTokenExchangeRole.
Registration (CreateThing, CreateKeysAndCertificate, the attachments) is the installer's work and stays the run's
key, as a person with administrator credentials runs the Greengrass installer; so do the Greengrass data-plane calls
(recipes, the local deployment protocol), which the device's certificate authorizes in AWS.

Tests give a ``Device`` their own control plane (a fake ``gg``, recorded reports) instead of overwriting a device's
attributes.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from loupe_local.iot_credentials import CredentialCache, DeviceIdentity
from loupe_local.local_auth import RunCredentials, sign_request
from loupe_local.private_files import write_private

CERTIFICATE_ID_FILE = "thingCert.id"
PRIVATE_KEY_FILE = "privKey.key"  # noqa: S105 - a file name


class ControlPlane(Protocol):
    """What a ``Device`` uses of the control plane."""

    @property
    def gg(self) -> Any:
        """A greengrassv2 client: component versions and their recipes (public ones included)."""
        ...

    @property
    def s3(self) -> Any:
        """An S3 client: component artifacts."""
        ...

    def register(self, thing: str, thing_group: str) -> None:
        """Create the device's thing (once) and add it to its thing group."""
        ...

    def post(self, thing: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call of the local device protocol: ``/sync`` or ``/deployments/{id}/status``."""
        ...


class LocalControlPlane:
    """The control plane at the local endpoint: boto3 clients and the local device protocol over HTTP."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: RunCredentials,
        role_alias: str = "",
        device_policy: str = "",
        root: Path | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials  # the local AWS's run credential: it refuses requests not signed with it
        self.role_alias = role_alias  # the nucleus' iotRoleAlias; "" when the stack has none (run key, as before)
        self.device_policy = device_policy  # the IoT policy attached to the device's certificate
        self.root = root
        self.cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
        session = boto3.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            region_name=region,
        )
        self.s3 = session.client("s3", endpoint_url=endpoint, config=self.cfg)
        self.iot = session.client("iot", endpoint_url=endpoint, config=self.cfg)
        self.gg = session.client("greengrassv2", endpoint_url=endpoint, config=self.cfg)
        self.token_credentials: CredentialCache | None = None  # the device's role credentials, once registered

    def register(self, thing: str, thing_group: str) -> None:
        with contextlib.suppress(self.iot.exceptions.ResourceAlreadyExistsException):
            self.iot.create_thing(thingName=thing)
        if thing_group:
            self.iot.add_thing_to_thing_group(thingGroupName=thing_group, thingName=thing)
        if self.role_alias and self.root is not None:
            identity = self._identity(thing, self.root)
            self.token_credentials = CredentialCache(identity, self.endpoint)
            self.token_credentials.current()  # fail here, at start, when the provider refuses the device
            self.s3 = self.token_credentials.session(self.region).client(
                "s3", endpoint_url=self.endpoint, config=self.cfg
            )

    def _identity(self, thing: str, root: Path) -> DeviceIdentity:
        """The device's certificate and key: the ones in its root folder while IoT still has that certificate
        attached to the thing, else a new ACTIVE one (CreateKeysAndCertificate), attached to the thing
        (AttachThingPrincipal) and to the core-device policy (AttachPolicy), as the Greengrass installer's
        ``--provision true`` does."""
        id_file, key_file = root / CERTIFICATE_ID_FILE, root / PRIVATE_KEY_FILE
        if id_file.is_file() and key_file.is_file():
            cert_id = id_file.read_text().strip()
            try:
                arn = self.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
                if thing in self.iot.list_principal_things(principal=arn).get("things", []):
                    return DeviceIdentity(thing, cert_id, key_file.read_text(), self.role_alias)
            except self.iot.exceptions.ResourceNotFoundException:
                pass
        out = self.iot.create_keys_and_certificate(setAsActive=True)
        self.iot.attach_thing_principal(thingName=thing, principal=out["certificateArn"])
        if self.device_policy:
            self.iot.attach_policy(policyName=self.device_policy, target=out["certificateArn"])
        write_private(key_file, out["keyPair"]["PrivateKey"])
        write_private(id_file, out["certificateId"])
        return DeviceIdentity(thing, out["certificateId"], out["keyPair"]["PrivateKey"], self.role_alias)

    def post(self, thing: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.endpoint}/greengrass/v2/local/coreDevices/{thing}{path}"
        data = json.dumps(body).encode()
        headers = sign_request(
            self.credentials, "POST", url, "greengrass", self.region, data, {"Content-Type": "application/json"}
        )
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - the local endpoint
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - the local endpoint (http://127.0.0.1)
            return json.loads(resp.read() or b"{}")
