"""loupe.safe_paths: S3 keys and archive members stay inside the folder they are written to, or are refused."""

from __future__ import annotations

import io
import os
import tarfile

import boto3
import pytest
from moto import mock_aws
from support.hostile_keys import escaping_tar_gz, escaping_zip, files_under, put_hostile_keys

from loupe.safe_paths import (
    UnsafeKeyError,
    confined,
    download_prefix,
    extract_tar,
    extract_zip,
    plan_prefix,
    relative_key,
)


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        ("", "empty path"),
        ("../evil.txt", "'..' segment"),
        ("a/../../evil.txt", "'..' segment"),
        ("a/./b", "'.' segment"),
        ("/etc/x", "absolute path"),
        ("a//b", "empty path segment"),
        ("a/", "empty path segment"),
        ("..\\evil.txt", "backslash"),
        ("C:evil.txt", "drive letter"),
        ("a\x00b", "NUL byte"),
    ],
)
def test_unsafe_relative_paths_are_refused(tmp_path, rel, reason):
    with pytest.raises(UnsafeKeyError, match=f"escapes {tmp_path}: {reason}") as err:
        confined(tmp_path, rel)
    assert err.value.key == rel


def test_plain_relative_paths_map_under_the_root(tmp_path):
    assert confined(tmp_path, "images/a.jpg") == tmp_path / "images" / "a.jpg"
    assert confined(tmp_path, "2026-01-01T10:00:00.json") == tmp_path / "2026-01-01T10:00:00.json"
    assert confined(tmp_path, "..hidden/x..y") == tmp_path / "..hidden" / "x..y"


def test_a_symlink_in_the_folder_cannot_carry_a_path_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafeKeyError, match="key 'link/evil.txt' escapes .*resolves to"):
        confined(root, "link/evil.txt")
    os.symlink(root / "inner", root / "inner-link")
    assert confined(root, "inner-link/ok.txt") == root / "inner-link" / "ok.txt"


def test_relative_key_drops_the_prefix_and_one_separator():
    assert relative_key("p/a/b.txt", "p/") == "a/b.txt"
    assert relative_key("p/a/b.txt", "p") == "a/b.txt"
    assert relative_key("code/sourcedir.tar.gz", "code/sourcedir.tar.gz") == "sourcedir.tar.gz"
    assert relative_key("p//abs", "p/") == "/abs"  # left for confined() to refuse
    assert relative_key("p//abs", "p") == "/abs"
    with pytest.raises(UnsafeKeyError, match="not under the listed prefix"):
        relative_key("q/x", "p/")


def test_plan_refuses_the_whole_prefix_for_one_bad_key(tmp_path):
    assert plan_prefix(["p/", "p/a.txt"], "p/", tmp_path) == [("p/a.txt", tmp_path / "a.txt")]
    with pytest.raises(UnsafeKeyError, match="key 'p//abs' escapes"):
        plan_prefix(["p/a.txt", "p//abs"], "p/", tmp_path)


@pytest.mark.parametrize("prefix", ["prefix/", ""])
def test_download_of_a_hostile_prefix_writes_nothing(tmp_path, prefix):
    dest = tmp_path / "deep" / "dest"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="hostile")
        s3.put_object(Bucket="hostile", Key=prefix + "good.txt", Body=b"good")
        bad = put_hostile_keys(s3, "hostile", prefix, tmp_path)
        with pytest.raises(UnsafeKeyError, match=f"escapes {dest}"):
            download_prefix(s3, "hostile", prefix, dest)
        assert files_under(tmp_path) == set()  # nothing inside, nothing outside
        for key in bad:
            s3.delete_object(Bucket="hostile", Key=key)
        assert download_prefix(s3, "hostile", prefix, dest) == 1
        assert (dest / "good.txt").read_bytes() == b"good"
        assert files_under(tmp_path) == {"deep/dest/good.txt"}


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "..\\evil.txt"])
def test_tar_with_an_escaping_member_extracts_nothing(tmp_path, bad):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(escaping_tar_gz({"model.onnx": b"m"}, bad))
    dest = tmp_path / "x" / "out"
    with pytest.raises(UnsafeKeyError, match="escapes"):
        extract_tar(archive, dest)
    assert files_under(tmp_path) == {"a.tar.gz"}


def test_tar_with_a_link_leaving_the_folder_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../.."
        tar.addfile(link)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeKeyError, match="key 'escape' escapes"):
        extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "escape").is_symlink()


def test_a_plain_tar_extracts(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(escaping_tar_gz({"model.onnx": b"m"}, "./sub/model_card.json"))
    assert extract_tar(archive, tmp_path / "out") == ["model.onnx", "./sub/model_card.json"]
    assert files_under(tmp_path / "out") == {"model.onnx", "sub/model_card.json"}


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs.txt", "a/../../evil.txt", "..\\evil.txt"])
def test_zip_with_an_escaping_member_extracts_nothing(tmp_path, bad):
    archive = tmp_path / "a.zip"
    archive.write_bytes(escaping_zip({"inference/app.py": b"x"}, bad))
    with pytest.raises(UnsafeKeyError, match="escapes"):
        extract_zip(archive, tmp_path / "out")
    assert files_under(tmp_path) == {"a.zip"}


def test_a_plain_zip_extracts(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(escaping_zip({"inference/app.py": b"x", "inference/": b""}, "top.txt"))
    extract_zip(archive, tmp_path / "out")
    assert files_under(tmp_path / "out") == {"inference/app.py", "top.txt"}
