"""Files and folders only their owner can read: the run's credentials, device keys, the state the local AWS keeps."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), also when it already existed (a ``.loupe`` left by an
    older version). A shared folder such as /tmp (sticky bit) is refused rather than closed to everyone else."""
    if path.is_dir() and path.stat().st_mode & stat.S_ISVTX:
        raise ValueError(f"{path} is a shared folder: give the local AWS a state folder of its own (LOUPE_STATE_DIR)")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (0600), atomically, in an owner-only folder: never readable by others,
    not even for the moment between creating and restricting it."""
    private_dir(path.parent)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)
    path.chmod(0o600)
    return path
