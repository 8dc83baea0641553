"""``loupe.console_api.static``: the web folder's index serves only its own regular files of the allowed types, and
the CSP names exactly the origins it is given."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from loupe.console_api import static


def _root(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    (web / "vendor").mkdir(parents=True)
    (web / "labeling.html").write_text("<!doctype html>")
    (web / "vendor" / "lib.min.js").write_text("var x;")
    (web / "logo.png").write_bytes(b"\x89PNG\r\n")
    (web / "notes.txt").write_text("not served")
    (web / ".hidden.js").write_text("not served")
    (tmp_path / "app.py").write_text("secret = 1")
    (web / "link.js").symlink_to(tmp_path / "app.py")
    return web


def test_only_the_folders_own_files_of_allowed_types_are_served(tmp_path: Path) -> None:
    root = static.WebRoot(_root(tmp_path))
    assert sorted(root.files) == ["labeling.html", "logo.png", "vendor/lib.min.js"]
    page = root.get("labeling.html")
    assert page is not None and page.content_type == "text/html; charset=utf-8" and page.body == "<!doctype html>"
    script = root.get("vendor/lib.min.js")
    assert script is not None and script.content_type.startswith("text/javascript")
    image = root.get("logo.png")
    assert image is not None and image.body == b"\x89PNG\r\n"  # bytes: API Gateway gets it base64-encoded
    for name in (
        "../app.py",
        "vendor/../../app.py",
        "link.js",
        "notes.txt",
        ".hidden.js",
        "vendor",
        "",
        "/labeling.html",
    ):
        assert root.get(name) is None, name


def test_a_missing_folder_serves_nothing(tmp_path: Path) -> None:
    assert static.WebRoot(tmp_path / "absent").files == {}


def test_the_policy_and_the_origins() -> None:
    csp = static.content_security_policy(
        ["https://b.s3.amazonaws.com"], ["https://cognito-idp.eu-west-1.amazonaws.com"]
    )
    assert "img-src 'self' https://b.s3.amazonaws.com;" in csp
    assert "connect-src 'self' https://cognito-idp.eu-west-1.amazonaws.com;" in csp
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert (
        static.origin_of("https://cognito-idp.eu-west-1.amazonaws.com/")
        == "https://cognito-idp.eu-west-1.amazonaws.com"
    )
    with pytest.raises(ValueError):
        static.origin_of("javascript:alert(1)")


def test_the_cloud_origins_come_from_the_clients_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    idp = boto3.client("cognito-idp", region_name="eu-west-1")
    assert static.endpoint_of(idp) == "https://cognito-idp.eu-west-1.amazonaws.com"
    s3 = boto3.client(
        "s3", region_name="eu-west-1", config=__import__("botocore.config").config.Config(signature_version="s3v4")
    )
    assert static.presign_origin(s3, "loupe-raw-123") == "https://loupe-raw-123.s3.amazonaws.com"
    cfg = static.app_config("eu-west-1", "eu-west-1_abc", "client", static.endpoint_of(idp))
    assert cfg["cognitoEndpoint"] == "https://cognito-idp.eu-west-1.amazonaws.com/"
