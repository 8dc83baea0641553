"""S3 keys and archive members that try to leave the folder they are downloaded or extracted into."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

# relative to the prefix a download lists: a ".." walk, an empty segment (the rest reads as absolute once the
# prefix is cut), a backslash walk (a separator on Windows)
ESCAPING_TAILS = ("../../evil.txt", "/abs", "..\\..\\evil-win.txt")
# a key that is absolute by itself, listed under the empty prefix
ABSOLUTE_KEY = "/etc/x"


def put_hostile_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Put one escaping object of each kind under ``prefix`` (``prefix`` ends with ``/`` or is empty)."""
    keys = [prefix + tail for tail in ESCAPING_TAILS] if prefix else [ABSOLUTE_KEY]
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
