"""Every environment that pip-installs at run time installs a hashed lock, in hash-checking mode.

The Lambda layer (``sam build`` installs ``layers/common/requirements.txt``), the SageMaker jobs (the code publisher
ships ``training/loupe_training/requirements.lock`` as the sourcedir's ``requirements.txt``) and the core device
(the ``com.loupe.inference`` recipe's Install step) each get a file compiled by ``make lock`` from a
``requirements.in``: every package pinned, each with the sha256 of its distributions. A release re-uploaded under
the same version, or a mirror serving other bytes, then fails the install instead of running.

Each rule runs against the real files (must hold) and a known-bad sample (must be caught).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name
from support.locks import direct_requirements, lock_problems, read_lock

REPO = Path(__file__).resolve().parents[3]
HASH = "--hash=sha256:" + "0" * 64

# run-time lock -> the requirements.in it is compiled from
LOCKS = {
    REPO / "layers/common/requirements.txt": REPO / "layers/common/requirements.in",
    REPO / "training/loupe_training/requirements.lock": REPO / "training/requirements.in",
    REPO / "edge_component/inference/requirements.txt": REPO / "edge_component/inference/requirements.in",
    REPO / "scripts/tools/parliament.txt": REPO / "scripts/tools/parliament.in",  # make lint-infra's IAM linter
}
# where a run-time `pip install` is written: the pipeline's processing entry (generated into template.yaml) and
# the Greengrass recipes
INSTALLERS = [
    REPO / "template.yaml",
    REPO / "training/pipeline.py",
    *sorted((REPO / "edge_component").glob("*/recipe.yaml")),
]
_SKIP_DIRS = {".venv", ".tools", "node_modules", ".aws-sam", ".loupe", "loupe-demo", ".git", "tests"}


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# --------------------------------------------------------------------------------------------- the files


def _requirement_files() -> set[Path]:
    found = set()
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]  # pruned: never walk .venv or node_modules
        found |= {Path(folder) / f for f in files if f.startswith("requirements") or f.endswith(".lock")}
    tools = REPO / "scripts/tools"  # the lint tools' locks and their sources
    found |= {p for p in tools.glob("*") if p.suffix in (".in", ".txt")}
    return found


def test_every_requirements_file_in_the_repository_is_a_known_lock_or_its_source() -> None:
    """A new requirements file cannot slip in unlocked: each one is a lock below or the source of one."""
    expected = set(LOCKS) | set(LOCKS.values())
    found = _requirement_files()
    assert found == expected, sorted(_rel(p) for p in found ^ expected)


@pytest.mark.parametrize("lock", sorted(LOCKS), ids=_rel)
def test_each_run_time_lock_pins_and_hashes_every_line(lock: Path) -> None:
    assert lock_problems(lock.read_text()) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("boto3==1.44.5\n", "no --hash"),
        (f"boto3>=1.40 {HASH}\n", "not pinned"),
        (f"numpy==2.* {HASH}\n", "not pinned"),
        (f"pkg @ https://example.com/pkg-1.0.tar.gz {HASH}\n", "not pinned"),
        (f"--extra-index-url https://example.com/simple\nboto3==1.44.5 {HASH}\n", "an option"),
        ("-e ./somewhere\n", "an option"),
        (f"boto3==1.44.5 --hash=md5:{'0' * 32}\n", "no --hash"),
        ("# nothing\n", "no requirement"),
    ],
)
def test_a_loose_or_unhashed_lock_line_is_caught(text: str, problem: str) -> None:
    assert any(problem in p for p in lock_problems(text)), lock_problems(text)


@pytest.mark.parametrize("lock", sorted(LOCKS), ids=_rel)
def test_each_lock_is_compiled_from_its_source(lock: Path) -> None:
    """The lock is not stale: each direct requirement of requirements.in is locked at its pinned version."""
    locked = read_lock(lock.read_text())
    for name, req in direct_requirements(LOCKS[lock].read_text()).items():
        assert name in locked, f"{_rel(LOCKS[lock])}: {name} is not in {_rel(lock)} (run make lock)"
        assert req.specifier.contains(locked[name].version), f"{name}: {req} vs {locked[name].version}: make lock"
        assert all(s.operator == "==" for s in req.specifier), f"{_rel(LOCKS[lock])}: pin {req} with =="


def test_the_training_lock_leaves_torch_to_the_framework_image() -> None:
    """The DLC brings torch built for its CUDA: the lock must not install another one (or CUDA wheels) over it."""
    locked = read_lock((REPO / "training/loupe_training/requirements.lock").read_text())
    clash = sorted(n for n in locked if n in {"torch", "torchvision", "triton"} or n.startswith("nvidia-c"))
    assert clash == []


def test_the_layer_and_training_locks_agree_where_they_overlap() -> None:
    """`make setup` constrains .venv with both: one version per package, or pip refuses the constraints."""
    layer = read_lock((REPO / "layers/common/requirements.txt").read_text())
    training = read_lock((REPO / "training/loupe_training/requirements.lock").read_text())
    assert {
        n: (layer[n].version, training[n].version)
        for n in layer.keys() & training.keys()
        if layer[n].version != training[n].version
    } == {}


# --------------------------------------------------------------------------------------------- the installers


def pip_install_problems(text: str, *, where: str) -> list[str]:
    """Each `pip install` command in text must install a lock with --require-hashes (and, on a device, --no-deps:
    the lock already holds the whole closure for every platform, and nothing else may be resolved there)."""
    problems = []
    commands = [c for c in re.split(r"[;\n]|&&", text.replace("\\\n", " ")) if re.search(r"\bpip\b.*\binstall\b", c)]
    for cmd in commands:
        cmd = " ".join(cmd.split())
        if "--require-hashes" not in cmd:
            problems.append(f"{where}: {cmd!r} lacks --require-hashes")
        # the lock by name, or the recipe's "$REQ" (its value: test_the_inference_recipe_installs_the_shipped_lock)
        if not re.search(r'(^|\s)-r\s+(\S*requirements\.txt\S*|"\$REQ")', cmd):
            problems.append(f"{where}: {cmd!r} installs something other than the lock")
        if where.endswith("recipe.yaml") and "--no-deps" not in cmd:
            problems.append(f"{where}: {cmd!r} lacks --no-deps")
    return problems


def test_every_run_time_pip_install_requires_hashes() -> None:
    seen = 0
    for path in INSTALLERS:
        text = path.read_text()
        seen += len(re.findall(r"\bpip\b[^\n;]*\binstall\b", text))
        assert pip_install_problems(text, where=_rel(path)) == []
    assert seen >= 3, "the processing entry (pipeline.py + template) and the inference recipe each install a lock"


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        (
            "set -e; pip install --quiet -r /opt/ml/code/requirements.txt; exec python3 job.py",
            "template.yaml",
            "--require-hashes",
        ),
        ('"$VENV/bin/python" -m pip install --require-hashes -r "$REQ/requirements.txt"', "x/recipe.yaml", "--no-deps"),
        ("pip install --require-hashes ultralytics==8.4.190", "template.yaml", "other than the lock"),
    ],
)
def test_an_unhashed_install_is_caught(text: str, where: str, problem: str) -> None:
    assert any(problem in p for p in pip_install_problems(text, where=where))


def test_the_inference_recipe_installs_the_shipped_lock() -> None:
    """Install reads requirements.txt from the component's own artifact: the file tested above."""
    recipe = yaml.safe_load((REPO / "edge_component/inference/recipe.yaml").read_text())
    (manifest,) = recipe["Manifests"]
    script = manifest["Lifecycle"]["Install"]["Script"]
    assert 'REQ="{artifacts:decompressedPath}/com.loupe.inference/requirements.txt"' in script
    assert re.search(r'pip install [^\n]*--require-hashes --no-deps -r "\$REQ"', script)


def test_the_locked_packages_have_distributions_for_every_target() -> None:
    """Sanity of the hashes themselves: a lock line lists one sha256 per distribution pip may choose; binary
    packages have several (wheels per platform), and no hash is listed twice for one package."""
    for lock in LOCKS:
        for entry in read_lock(lock.read_text()).values():
            assert len(set(entry.hashes)) == len(entry.hashes), f"{_rel(lock)}: {entry.name} repeats a hash"
    edge = read_lock((REPO / "edge_component/inference/requirements.txt").read_text())
    assert len(edge[canonicalize_name("numpy")].hashes) > 2  # x86_64 and aarch64 devices at least
