"""The web app's own routes on the local HTTP API: served without a token, only the app's files, with its security
headers; every API route still needs a token (401)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from support.console_users import api

pytestmark = pytest.mark.integration

API_ROUTES = (
    ("GET", "/me"),
    ("GET", "/models"),
    ("POST", "/models/1/approval"),
    ("GET", "/labeling/tasks/next"),
    ("POST", "/labeling/tasks/abc"),
    ("POST", "/labeling/tasks/abc/decline"),
    ("GET", "/review/next"),
    ("POST", "/review/job.1"),
)


def test_every_api_route_needs_a_token(app_url: str) -> None:
    for method, path in API_ROUTES:
        status, _, body = api(f"{app_url}{path}", method, body={} if method == "POST" else None)
        assert (status, body) == (401, {"message": "Unauthorized"}), (method, path, status, body)


def test_the_app_and_its_configuration_need_no_token(web_stack: Any, app_url: str) -> None:
    status, headers, _ = api(f"{app_url}/")
    # urllib follows the redirect to the Labeling page
    assert status == 200 and headers["content-type"].startswith("text/html")
    for name, kind in (
        ("labeling.html", "text/html"),
        ("review.html", "text/html"),
        ("models.html", "text/html"),
        ("signin.html", "text/html"),
        ("shell.js", "text/javascript"),
        ("console.css", "text/css"),
        ("vendor/amazon-cognito-identity.min.js", "text/javascript"),
    ):
        status, headers, body = api(f"{app_url}/web/{name}")
        assert status == 200, (name, body)
        assert headers["content-type"].startswith(kind), (name, headers)
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
        csp = headers["content-security-policy"]
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    status, _, config = api(f"{app_url}/config.json")
    assert status == 200
    assert config == {
        "region": web_stack.region,
        "userPoolId": web_stack.physical("ConsoleUserPool"),
        "clientId": web_stack.physical("ConsoleUserPoolClient"),
        "cognitoEndpoint": web_stack.endpoint.rstrip("/") + "/",
    }


def test_the_csp_names_the_local_cognito_and_s3_origins(web_stack: Any, app_url: str) -> None:
    _, headers, _ = api(f"{app_url}/web/labeling.html")
    local = "{0.scheme}://{0.netloc}".format(urlsplit(web_stack.endpoint))
    directives = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
    assert directives["connect-src"] == f"'self' {local}"
    assert directives["img-src"] == f"'self' {local}"
    assert directives["default-src"] == "'self'" and directives["object-src"] == "'none'"


@pytest.mark.parametrize(
    "path",
    [
        "/web/app.py",  # not in the web folder
        "/web/../app.py",
        "/web/%2e%2e/app.py",
        "/web/vendor/../../app.py",
        "/web/vendor/%2e%2e%2f%2e%2e%2fapp.py",
        "/web/nothing.js",
        "/web/labeling.html.bak",
        "/web/vendor",
        "/web/",
    ],
)
def test_nothing_but_the_apps_files_is_served(app_url: str, path: str) -> None:
    status, _, body = api(f"{app_url}{path}")
    assert status in (401, 404), (path, status, body)  # 401: no route of the app matched, the authorizer's default
    assert not (isinstance(body, str) and "lambda_handler" in body)


def test_a_page_load_does_not_spend_the_api_routes_throttle(app_url: str) -> None:
    """The web app's files have a route limit of their own (a page load fetches four of them at once); the API
    routes keep the stage's default."""
    # sixty loads of the shell in a row: none refused (the stage's default would refuse some after its burst of 20)
    statuses = [api(f"{app_url}/web/shell.js")[0] for _ in range(60)]
    assert set(statuses) == {200}, statuses
