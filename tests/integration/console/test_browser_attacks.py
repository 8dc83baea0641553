"""A web page in a real browser cannot drive the local AWS: not cross-origin, not through DNS rebinding.

The review's attack, replayed in Chromium: a page the user visits (any origin but the local AWS's own) fetches the
local endpoint; before, moto answered it with ``Access-Control-Allow-Origin: *`` and no credential was needed, so
the page read every bucket. A rebound name (``evil.example`` resolving to 127.0.0.1) made the page same-origin with
the endpoint, so no CORS was needed at all.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support import image_samples as samples

pytestmark = pytest.mark.integration

FETCH = """async (url) => {
  try {
    const response = await fetch(url);
    return {status: response.status, text: await response.text()};
  } catch (error) {
    return {error: String(error)};
  }
}"""


class _AnySite(BaseHTTPRequestHandler):
    """A page of some other site the user visits: plain HTML, no Content-Security-Policy of its own (the console's
    CSP would block the page's requests itself, which is not the defence under test here)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<!doctype html><title>some site</title><p>hello</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def other_site(page: Any) -> Iterator[Any]:
    """``page``, opened on a site of its own origin (another loopback port)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnySite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        yield page
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def secret_object(local_aws: Any) -> Iterator[tuple[str, str]]:
    bucket, key = local_aws.physical("RawBucket"), f"browser/{uuid.uuid4().hex}.txt"
    local_aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"the factory's photo")
    yield bucket, key
    local_aws.client("s3").delete_object(Bucket=bucket, Key=key)


def test_a_cross_origin_page_cannot_read_the_local_aws(other_site: Any, local_aws: Any, secret_object) -> None:
    bucket, key = secret_object
    page = other_site
    listing = page.evaluate(FETCH, f"{local_aws.endpoint}/{bucket}?list-type=2")
    obj = page.evaluate(FETCH, f"{local_aws.endpoint}/{bucket}/{key}")
    for answer in (listing, obj):
        # no CORS grant: the browser hands the page nothing (and the gateway refused the request anyway)
        assert "error" in answer, answer


LOAD_IMAGE = """(url) => new Promise((resolve) => {
  const img = new Image();
  img.onload = () => resolve(img.naturalWidth);
  img.onerror = () => resolve(-1);
  img.src = url;
})"""


def test_an_image_shown_through_a_presigned_url_still_loads(other_site: Any, local_aws: Any) -> None:
    """A presigned GET in an <img> carries no Origin (a no-cors request): the one browser use that must work."""
    bucket, key = local_aws.physical("RawBucket"), f"browser/{uuid.uuid4().hex}.jpg"
    s3 = local_aws.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=samples.jpeg(64, 48, seed=7), ContentType="image/jpeg")
    page = other_site
    try:
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
        assert page.evaluate(LOAD_IMAGE, url) == 64
        assert page.evaluate(LOAD_IMAGE, url.replace(key, key.replace(".jpg", ".png"))) == -1  # tampered: refused
    finally:
        s3.delete_object(Bucket=bucket, Key=key)


def test_a_dns_rebound_page_gets_only_a_refusal(local_aws: Any, secret_object, chromium_with) -> None:
    bucket, key = secret_object
    rebound = f"http://evil.example:{local_aws.port}"
    page = chromium_with(["--host-resolver-rules=MAP evil.example 127.0.0.1"]).new_page()
    first = page.goto(f"{rebound}/")  # the attacker's page, now served "by" the local AWS's address
    assert first is not None and first.status == 403
    answer = page.evaluate(FETCH, f"{rebound}/{bucket}/{key}")  # same-origin with the endpoint: no CORS needed
    assert answer.get("status") == 403, answer
    assert "the factory's photo" not in answer["text"] and "is not this local AWS" in answer["text"]
