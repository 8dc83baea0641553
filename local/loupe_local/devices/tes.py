"""The token exchange service of a local core device (``aws.greengrass.TokenExchangeService``).

Greengrass serves its components the core device's AWS credentials on a loopback HTTP server: a component that
depends on ``aws.greengrass.TokenExchangeService`` gets ``AWS_CONTAINER_CREDENTIALS_FULL_URI``
(``http://localhost:<port>/2016-11-01/credentialprovider/``) and ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` in its
environment, and the AWS SDKs' container credential provider fetches the credentials from there with that token in
the ``Authorization`` header (Greengrass developer guide, "Interact with AWS services" and the "Token exchange
service" component page). The credentials are those the nucleus got from the IoT credentials provider for the
device's role alias (``iot_credentials.CredentialCache``); a request without a component's token is refused (403).
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("loupe_local.device")

COMPONENT = "aws.greengrass.TokenExchangeService"
PATH = "/2016-11-01/credentialprovider/"


class TokenExchangeService:
    """The loopback credentials endpoint; one token per component that depends on the service."""

    def __init__(self, credentials: Callable[[], dict[str, Any]]) -> None:
        """``credentials``: the device's current credentials in the credentials provider's shape."""
        self.credentials = credentials
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.served = 0
        self.refused = 0

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def token_for(self, component: str) -> str:
        with self._lock:
            return self._tokens.setdefault(component, secrets.token_urlsafe(32))

    def authorized(self, token: str) -> bool:
        with self._lock:
            known = list(self._tokens.values())
        return bool(token) and any(hmac.compare_digest(token, t) for t in known)

    def answer(self, path: str, token: str) -> tuple[int, dict[str, Any]]:
        if path != PATH:
            return 404, {"message": "Not Found"}
        if not self.authorized(token):
            with self._lock:
                self.refused += 1
            return 403, {"message": "Request is not authorized: a component's AWS_CONTAINER_AUTHORIZATION_TOKEN"}
        try:
            creds = self.credentials()
        except Exception as exc:  # the provider refused or is unreachable: the component's SDK sees an error
            log.warning("token exchange service: no credentials: %s", exc)
            return 500, {"message": f"could not get credentials: {exc}"}
        with self._lock:
            self.served += 1
        expiration = datetime.fromisoformat(str(creds["expiration"]).replace("Z", "+00:00"))
        return 200, {
            "AccessKeyId": creds["accessKeyId"],
            "SecretAccessKey": creds["secretAccessKey"],
            "Token": creds["sessionToken"],
            "Expiration": expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def start(self) -> TokenExchangeService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status, body = service.answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="token-exchange", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
