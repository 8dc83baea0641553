"""Hashed lock files (``make lock``): reading them the way pip's hash-checking mode does.

pip installs a requirements file in hash-checking mode when ``--require-hashes`` is given or any line carries a
``--hash``; then every requirement must be pinned with ``==`` and carry the sha256 of each file pip may pick
(https://pip.pypa.io/en/stable/topics/secure-installs/). :func:`lock_problems` names each line that would let an
unpinned or unhashed file in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

SHA256 = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")
# options that change where pip looks or what it installs: none belongs in a lock
_OPTION = re.compile(r"^(-[a-zA-Z]|--[a-z-]+)")


@dataclass(frozen=True)
class Locked:
    name: str  # canonical project name
    version: str
    hashes: tuple[str, ...]
    marker: str


def logical_lines(text: str) -> list[str]:
    """Lines as pip reads them: continuations joined, comments and blank lines dropped."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(line)
    return out


def lock_problems(text: str) -> list[str]:
    """Why pip would not install exactly the locked files (an empty list: every line is pinned and hashed)."""
    problems = []
    lines = logical_lines(text)
    if not lines:
        return ["no requirement at all"]
    for line in lines:
        spec = line.split(" --hash=", 1)[0].strip()
        if _OPTION.match(spec):
            problems.append(f"{line}: an option, not a pinned requirement")
            continue
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            problems.append(f"{line}: {exc}")
            continue
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            problems.append(f"{spec}: not pinned with == to one version")
        if not SHA256.search(line):
            problems.append(f"{spec}: no --hash=sha256")
    return problems


def read_lock(text: str) -> dict[str, Locked]:
    """The pinned requirements of a lock by canonical name (call :func:`lock_problems` first)."""
    out = {}
    for line in logical_lines(text):
        req = Requirement(line.split(" --hash=", 1)[0].strip())
        (spec,) = req.specifier
        name = canonicalize_name(req.name)
        out[name] = Locked(name, spec.version, tuple(SHA256.findall(line)), str(req.marker or ""))
    return out


def direct_requirements(text: str) -> dict[str, Requirement]:
    """The requirements of a ``requirements.in`` by canonical name."""
    return {canonicalize_name(r.name): r for r in (Requirement(line) for line in logical_lines(text))}
