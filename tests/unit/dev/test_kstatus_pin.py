"""dev/kstatus builds against the cli-utils version dev/versions.env pins (one place for
versions), and dev/build-tools.sh --kstatus refuses to build when the two disagree."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_go_mod_requires_the_pinned_cli_utils_version() -> None:
    import stack as devstack  # tests/conftest.py puts dev/ on sys.path

    pinned = devstack.read_versions()["CLI_UTILS_VERSION"]
    go_mod = (REPO / "dev" / "kstatus" / "go.mod").read_text()
    assert re.findall(r"sigs\.k8s\.io/cli-utils (v\S+)", go_mod) == [pinned]
    assert f"sigs.k8s.io/cli-utils {pinned} " in (REPO / "dev" / "kstatus" / "go.sum").read_text()


def test_build_tools_refuses_a_go_mod_that_disagrees(tmp_path: Path) -> None:
    import stack as devstack

    pinned = devstack.read_versions()["CLI_UTILS_VERSION"]
    dev = tmp_path / "dev"
    shutil.copytree(REPO / "dev" / "kstatus", dev / "kstatus")
    for name in ("build-tools.sh", "versions.env"):
        shutil.copy(REPO / "dev" / name, dev / name)
    env_file = dev / "versions.env"
    env_file.write_text(
        re.sub(r"CLI_UTILS_VERSION=\S+", "CLI_UTILS_VERSION=v0.0.1", env_file.read_text())
    )
    done = subprocess.run(
        ["bash", str(dev / "build-tools.sh"), "--kstatus"],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "MODELDEPLOY_CACHE": str(tmp_path / "cache"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"requires sigs.k8s.io/cli-utils {pinned}, versions.env pins v0.0.1" in done.stderr
    assert not (tmp_path / "cache").exists()
