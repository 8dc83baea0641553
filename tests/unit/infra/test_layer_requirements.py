"""The Lambda layer brings its own boto3/botocore, new enough for the S3 calls loupe makes.

The python3.12 runtime bundles an SDK that AWS updates on its own schedule; a layer that relies on it may run
code whose parameters the bundled botocore does not know (it refuses them before any request). loupe writes
dataset versions with S3 conditional writes (PutObject ``IfNoneMatch``), which botocore added in 1.35.2 (its
``.changes/1.35.2.json``: "Add support for conditional writes for PutObject and CompleteMultipartUpload APIs").
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import botocore.session
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[3]
LAYER = REPO_ROOT / "layers" / "common"
CONDITIONAL_WRITES = Version("1.35.2")  # boto3 and botocore have shared version numbers since 1.34


def pins(path: Path) -> dict[str, Version]:
    """Exact (==) pins of a requirements file (a hashed lock too: its ``--hash`` options are dropped), by
    lower-case project name; anything else is refused."""
    out = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].split(" --hash=", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {line} is not pinned exactly"
        out[req.name.lower()] = Version(specs[0].version)
    return out


def test_the_layer_pins_an_sdk_with_conditional_writes() -> None:
    layer = pins(LAYER / "requirements.txt")
    for name in ("boto3", "botocore"):
        assert name in layer, f"layers/common/requirements.txt does not pin {name}; the runtime's copy would be used"
        assert layer[name] >= CONDITIONAL_WRITES, f"{name}=={layer[name]} predates S3 conditional writes"
    assert layer["boto3"] == layer["botocore"], "boto3 and botocore are released in step"


def test_the_layer_pins_what_the_local_aws_runs() -> None:
    """The version the tests exercise is the version deployed."""
    layer = pins(LAYER / "requirements.txt")
    for name in ("boto3", "botocore"):
        assert layer[name] == Version(metadata.version(name)), f"{name}: layer {layer[name]} vs .venv"


def test_the_pinned_sdk_knows_every_conditional_write_loupe_makes() -> None:
    """Each ``IfNoneMatch=``/``IfMatch=`` the layer's code passes to S3 is a member of that operation's input in
    the pinned (= installed) botocore."""
    s3 = botocore.session.get_session().get_service_model("s3")
    put = set(s3.operation_model("PutObject").input_shape.members)
    used = set()
    for path in (LAYER / "loupe").rglob("*.py"):
        used |= set(re.findall(r"\b(If(?:None)?Match)=", path.read_text()))
    assert used, "no conditional write found: update this test with the operations the layer now uses"
    assert used <= put, used - put


@pytest.mark.parametrize(
    ("text", "problem"),
    [("boto3>=1.35\n", "not pinned exactly"), ("botocore\n", "not pinned exactly")],
)
def test_a_loose_pin_is_caught(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    with pytest.raises(AssertionError, match=problem):
        pins(path)
