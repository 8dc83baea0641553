"""scripts/install_prereqs.sh installs only what is missing, and never Debian's npm over NodeSource's nodejs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "install_prereqs.sh"
BASH = shutil.which("bash") or "/bin/bash"


def _machine(tmp_path: Path, commands: list[str], nodejs_version: str = "", uid: int = 0) -> Path:
    """A PATH holding only the named commands (stubs), plus `id` and `dpkg-query` answering as this machine would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {name: "#!/bin/sh\nexit 0\n" for name in commands}
    stubs["id"] = f"#!/bin/sh\necho {uid}\n"
    stubs["dpkg-query"] = f"#!/bin/sh\nprintf '%s' '{nodejs_version}'\n" if nodejs_version else "#!/bin/sh\nexit 1\n"
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(0o755)
    return bin_dir


def _run(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - bash on the project's own script
        [BASH, str(SCRIPT), "--dry-run"], env={"PATH": str(bin_dir)}, capture_output=True, text=True, check=False
    )


def test_a_machine_with_nodesource_node_gets_only_what_it_lacks_and_no_debian_npm(tmp_path: Path) -> None:
    out = _run(_machine(tmp_path, ["make", "node", "npm"], nodejs_version="22.11.0-1nodesource1"))
    assert out.returncode == 0, out.stderr
    assert "apt-get install -y -qq mosquitto chromium" in out.stdout
    assert "npm" not in out.stdout.split("installing", 1)[1]


def test_a_bare_machine_gets_every_package(tmp_path: Path) -> None:
    out = _run(_machine(tmp_path, []))
    assert out.returncode == 0, out.stderr
    assert "apt-get install -y -qq make nodejs npm mosquitto chromium" in out.stdout


def test_npm_missing_beside_nodesource_nodejs_is_explained_not_installed(tmp_path: Path) -> None:
    out = _run(_machine(tmp_path, ["make", "node", "mosquitto", "chromium"], nodejs_version="20.18.1-1nodesource1"))
    assert out.returncode == 1
    assert "NodeSource" in out.stderr and "apt-get install" not in out.stdout


def test_npm_missing_beside_debians_nodejs_is_installed(tmp_path: Path) -> None:
    out = _run(_machine(tmp_path, ["make", "node", "mosquitto", "chromium"], nodejs_version="18.19.0+dfsg-6"))
    assert out.returncode == 0, out.stderr
    assert "apt-get install -y -qq npm" in out.stdout


def test_a_user_who_is_not_root_installs_through_sudo(tmp_path: Path) -> None:
    out = _run(_machine(tmp_path, ["make", "node", "npm", "chromium", "sudo"], uid=1000))
    assert out.returncode == 0, out.stderr
    assert "sudo apt-get install -y -qq mosquitto" in out.stdout


def test_a_complete_machine_installs_nothing(tmp_path: Path) -> None:
    out = _run(_machine(tmp_path, ["make", "node", "npm", "mosquitto", "chromium"]))
    assert out.returncode == 0, out.stderr
    assert "nothing to install" in out.stdout
