"""S3 keys and archive members that try to leave the folder they are downloaded or extracted into."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any


def hostile_keys(prefix: str, outside: Path) -> list[str]:
    """Keys under ``prefix`` that try to write outside the folder they are downloaded into.

    ``prefix/../../evil.txt`` (a ``..`` walk), ``prefix//<outside>/abs`` (an empty segment: the rest reads as the
    absolute path ``<outside>/abs`` once the prefix is cut), ``prefix/..\\..\\evil-win.txt`` (a walk on Windows);
    with the empty prefix, the absolute key ``<outside>/etc-x`` (like ``/etc/x``). ``outside`` is an absolute
    folder of the test's own, so code that follows a key out writes there, where the test looks, never in ``/``.
    """
    if not prefix:
        return [f"{outside}/etc-x"]
    return [f"{prefix}../../evil.txt", f"{prefix}/{str(outside).lstrip('/')}/abs", f"{prefix}..\\..\\evil-win.txt"]


def put_hostile_keys(s3: Any, bucket: str, prefix: str, outside: Path) -> list[str]:
    """Put the :func:`hostile_keys` objects; returns their keys."""
    keys = hostile_keys(prefix, outside)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"planted")
    return keys


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def escaping_tar_gz(good: dict[str, bytes], bad_name: str = "../evil.txt") -> bytes:
    """A tar.gz holding ``good`` and one member named ``bad_name``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in {**good, bad_name: b"planted"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def escaping_zip(good: dict[str, bytes], bad_name: str = "../evil.txt") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in {**good, bad_name: b"planted"}.items():
            zf.writestr(name, data)
    return buf.getvalue()
