"""One HTTP request to the local AWS exactly as given: http.client sends our Host header and body untouched (what a
browser page or a hand-made client would send, which boto3 would rewrite)."""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlsplit


def raw(rt: Any, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Any:
    """The response, with its body read into ``.data``."""
    parts = urlsplit(rt.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in {"Host": parts.netloc, **(headers or {})}.items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        resp.data = resp.read()
        return resp
    finally:
        conn.close()
