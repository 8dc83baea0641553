"""Map S3 keys and archive members to local paths without letting one escape its folder.

An S3 key is any UTF-8 string: ``prefix/../../evil.txt``, ``prefix//abs`` (an empty segment: the rest reads as an
absolute path once the prefix is cut) and ``/etc/x`` are all valid keys, and so are archive member names. Joined
naively onto a local folder they write anywhere the process may write. Every place that turns a key or a member
name into a local path goes through :func:`confined` (or the download/extract helpers here built on it), which
refuses with :class:`UnsafeKeyError` instead:

- an empty key, an absolute one (``/x``, or a Windows drive ``C:x``), a NUL byte, a backslash (a separator on
  Windows), and any empty, ``.`` or ``..`` segment;
- a key whose path, once the existing symlinks under the folder are followed, lands outside the folder.

Downloads check every key of a listing before they write anything, so a prefix holding one bad key is refused
as a whole and leaves nothing behind. Tar archives are extracted with the standard library's ``data`` filter
(https://docs.python.org/3/library/tarfile.html#tarfile-extraction-filter: no absolute or outside paths, no
links leaving the folder, no device files) after the same member-name check; ZIP archives get the member-name
check (zipfile writes no links).
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any


class UnsafeKeyError(ValueError):
    """An S3 key or archive member would map to a path outside its destination folder."""

    def __init__(self, key: str, root: str | Path, reason: str) -> None:
        self.key = key
        self.root = str(root)
        self.reason = reason
        super().__init__(f"key {key!r} escapes {root}: {reason}")


def unsafe_reason(rel: str) -> str:
    """Why the relative path ``rel`` cannot be used under a folder; ``""`` when it can."""
    if not rel:
        return "empty path"
    if "\x00" in rel:
        return "NUL byte"
    if "\\" in rel:
        return "backslash (a path separator on Windows)"
    if rel.startswith("/"):
        return "absolute path"
    if PureWindowsPath(rel).drive:
        return "drive letter"
    for part in rel.split("/"):
        if part == "":
            return "empty path segment ('//')"
        if part in (".", ".."):
            return f"{part!r} segment"
    return ""


def check_relative(rel: str, root: str | Path, key: str | None = None) -> str:
    """``rel`` itself when it is a plain relative path (no resolution of links); raises UnsafeKeyError."""
    reason = unsafe_reason(rel)
    if reason:
        raise UnsafeKeyError(rel if key is None else key, root, reason)
    return rel


def confined(root: str | Path, rel: str, key: str | None = None) -> Path:
    """``root / rel``, refused (UnsafeKeyError naming ``key`` or ``rel``) unless it stays strictly inside ``root``.

    Existing symlinks under ``root`` are followed for the check, so a link planted in the folder earlier cannot
    carry a write outside it.
    """
    root = Path(root)
    check_relative(rel, root, key)
    target = root.joinpath(*rel.split("/"))
    base = root.resolve()
    resolved = target.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise UnsafeKeyError(rel if key is None else key, root, f"resolves to {resolved}")
    return target


def relative_key(key: str, prefix: str) -> str:
    """``key`` relative to the S3 ``prefix`` it was listed under.

    A prefix that does not end with ``/`` names a "folder" too (``a/b`` lists ``a/b/c``): the one separator after
    it is dropped. A key equal to the prefix (the URI names one object) maps to its last segment.
    """
    if not key.startswith(prefix):
        raise UnsafeKeyError(key, prefix or "/", "not under the listed prefix")
    rel = key[len(prefix) :]
    if prefix and not prefix.endswith("/") and rel.startswith("/"):
        rel = rel[1:]
    if not rel:
        rel = PurePosixPath(key).name
    return rel


def plan_prefix(keys: Iterable[str], prefix: str, dest: str | Path) -> list[tuple[str, Path]]:
    """(key, local path) for every object key under ``prefix`` mapped into ``dest``; folder markers skipped.

    Every key is checked before the plan is returned: one unsafe key refuses the whole prefix.
    """
    plan = []
    for key in keys:
        if key.endswith("/"):  # a "folder" object (console-created): nothing to write
            continue
        plan.append((key, confined(dest, relative_key(key, prefix), key=key)))
    return plan


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every object key under ``prefix`` (ListObjectsV2, all pages)."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def download_prefix(s3: Any, bucket: str, prefix: str, dest: str | Path, **download_kwargs: Any) -> int:
    """Download every object under ``s3://bucket/prefix`` into ``dest`` (keys relative to the prefix).

    Returns the number of files written. Raises UnsafeKeyError, before writing anything, when a key would land
    outside ``dest``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    plan = plan_prefix(list_keys(s3, bucket, prefix), prefix, dest)
    for key, target in plan:
        target.parent.mkdir(parents=True, exist_ok=True)
        confined(dest, relative_key(key, prefix), key=key)  # again: a folder made above may be a planted link
        s3.download_file(bucket, key, str(target), **download_kwargs)
    return len(plan)


def _member_rel(name: str) -> str:
    """An archive member's name as a relative path: leading ``./`` dropped, a directory's trailing ``/`` too."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") if name not in ("", ".") else ""


def _check_members(names: list[str], dest: Path) -> None:
    """Every member name, first as text (nothing is created when one is refused), then resolved inside ``dest``
    (which is created): a symlink already there cannot lead a member out."""
    rels = [(name, _member_rel(name)) for name in names]
    for name, rel in rels:
        if rel:
            check_relative(rel, dest, key=name)
    dest.mkdir(parents=True, exist_ok=True)
    for name, rel in rels:
        if rel:
            confined(dest, rel, key=name)


def extract_tar(archive: str | Path | tarfile.TarFile, dest: str | Path) -> list[str]:
    """Extract a tar archive (a path or an open TarFile) into ``dest``; returns the member names.

    Every member name is checked first (UnsafeKeyError, nothing extracted), then extraction runs with the
    ``data`` filter, whose refusals (a link pointing outside, a device file) are raised as UnsafeKeyError too.
    """
    dest = Path(dest)
    if not isinstance(archive, tarfile.TarFile):
        with tarfile.open(archive) as tar:
            return extract_tar(tar, dest)
    tar = archive
    members = tar.getmembers()
    _check_members([m.name for m in members], dest)
    try:
        tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        refused = getattr(exc, "tarinfo", None)
        raise UnsafeKeyError(refused.name if refused is not None else "?", dest, str(exc)) from exc
    return [m.name for m in members]


def extract_zip(archive: str | Path, dest: str | Path) -> list[str]:
    """Extract a ZIP archive into ``dest`` after checking every member name (UnsafeKeyError, nothing written)."""
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_members([i.filename for i in infos], dest)
        for info in infos:
            rel = _member_rel(info.filename)
            if not rel:
                continue
            target = confined(dest, rel, key=info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            confined(dest, rel, key=info.filename)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        return [i.filename for i in infos]
