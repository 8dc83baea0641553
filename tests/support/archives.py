"""tar.gz archives built in memory, as model packages and training outputs are."""

from __future__ import annotations

import io
import tarfile


def tar_gz(files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A gzipped tar of ``files`` (name -> bytes), then the bare members ``extra`` (links, directories)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return buf.getvalue()
