"""The console's web app: which file a static route serves, with which type and headers, and its config.json.

The pages ship in the console function's own code (``functions/console_api/web/``), so no bucket is public and the
page's origin is the API's: its API calls are same-origin and need no CORS. A route serves only a file that was in
that folder when the function started (:class:`WebRoot` indexes it once): a name is looked up in that index, never
joined onto a path, so ``..``, an encoded slash, a symlink or a file of another type can only miss (404). Types come
from an allow-list of suffixes; everything else is not served.

Every page is sent with a Content-Security-Policy that allows scripts and styles from the app's own origin only (no
inline script or style), images from the buckets whose presigned GETs the API hands out, and connections to the
app and to Cognito's user pool endpoint (the sign-in calls). Both origins come from the clients' own endpoint
resolution (boto3's standard ``AWS_ENDPOINT_URL`` when one is set, the regional endpoint otherwise), never from a
"local" switch. MDN, "Content-Security-Policy"; Cognito API Reference, "Amazon Cognito user pools endpoints"
(``https://cognito-idp.<region>.amazonaws.com/``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
TEXT_SUFFIXES = frozenset({".html", ".js", ".css", ".svg"})
HOME = "/web/labeling.html"
MAX_FILES = 500


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL (what a CSP source names)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(image_origins: Iterable[str], connect_origins: Iterable[str]) -> str:
    images = " ".join(["'self'", *sorted(set(image_origins))])
    connect = " ".join(["'self'", *sorted(set(connect_origins))])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src {connect}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # a new deployment's pages are seen at the next load; the files are small
        "Cache-Control": "no-cache",
    }


@dataclass(frozen=True)
class StaticFile:
    name: str
    content_type: str
    body: str | bytes  # str for text types; bytes (sent base64-encoded by API Gateway) otherwise


@dataclass
class WebRoot:
    """The files of the web folder, indexed once: relative POSIX name -> path of a regular file of an allowed type."""

    root: Path
    files: dict[str, Path] = field(init=False)

    def __post_init__(self) -> None:
        self.files = {}
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix not in CONTENT_TYPES:
                continue
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                continue
            if len(self.files) >= MAX_FILES:
                break
            self.files[path.relative_to(self.root).as_posix()] = path

    def get(self, name: str) -> StaticFile | None:
        """The file called ``name`` (``labeling.js``, ``vendor/x.min.js``), or None."""
        path = self.files.get(name)
        if path is None:
            return None
        suffix = path.suffix
        data = path.read_bytes()
        body: str | bytes = data.decode("utf-8") if suffix in TEXT_SUFFIXES else data
        return StaticFile(name, CONTENT_TYPES[suffix], body)


def app_config(region: str, user_pool_id: str, client_id: str, cognito_endpoint: str) -> dict[str, Any]:
    """What the pages need to sign in: public identifiers only (the app client has no secret)."""
    return {
        "region": region,
        "userPoolId": user_pool_id,
        "clientId": client_id,
        "cognitoEndpoint": cognito_endpoint.rstrip("/") + "/",
    }


def endpoint_of(client: Any) -> str:
    """The endpoint a boto3 client resolved (``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_<SERVICE>`` when set, the
    service's regional endpoint otherwise)."""
    return str(client.meta.endpoint_url)


def presign_origin(s3: Any, bucket: str) -> str:
    """The origin the browser fetches ``bucket``'s presigned GETs from (virtual-hosted or path style, as the
    client signs them); presigning is computed locally, no request is made."""
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "csp-probe"}, ExpiresIn=60)
    return origin_of(str(url))
