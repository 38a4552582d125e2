"""A fresh machine needs two commands: `make demo` and `make test` install and build everything
themselves (README.md), and CI runs exactly those. These check the wiring (make's dry run) and
`make system-deps` (dev/build-tools.sh --system-deps) against a fake apt-get, so no package is
installed and nothing outside a temporary folder is touched."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGES = [
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-pushgateway",
    "python3-venv",
    "lua5.4",
]


def dry_run(target: str) -> list[str]:
    out = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def first(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


@pytest.mark.parametrize(("target", "last"), [("test", "pytest"), ("demo", "dev/demo.py")])
def test_readme_commands_install_system_packages_before_anything_needs_them(
    target: str, last: str
) -> None:
    lines = dry_run(target)
    deps = first(lines, "dev/build-tools.sh --system-deps")
    assert deps < first(lines, "-m venv") < first(lines, last)
    tools = [i for i, line in enumerate(lines) if line.strip() == "dev/build-tools.sh"]
    assert tools and deps < tools[0] < first(lines, last)


def test_ci_runs_the_readme_commands_and_installs_nothing_itself() -> None:
    script = (REPO / ".ci" / "run").read_text()
    commands = [line for line in script.splitlines() if line.strip().startswith("make ")]
    assert [c.split()[1] for c in commands] == ["lint", "test"]
    for installer in ("apt-get", "pip ", "make install", "make tools", "--system-deps"):
        assert installer not in script


def test_package_names_and_minimum_versions_live_in_versions_env() -> None:
    import stack as devstack  # tests/conftest.py puts dev/ on sys.path

    versions = devstack.read_versions()
    assert versions["SYSTEM_PACKAGES"].split() == PACKAGES
    assert devstack.version_tuple(versions["PROMETHEUS_MIN_VERSION"]) >= (2, 42)
    assert devstack.version_tuple("prometheus, version 2.42.0+ds (branch: debian/sid)") == (
        2,
        42,
        0,
    )


FAKE_APT = """#!{bash}
echo "$*" >>"{calls}"
if [[ $1 == install ]]; then
  for f in prometheus promtool prometheus-alertmanager prometheus-pushgateway lua5.4; do
    printf '#!{bash}\\nexit 0\\n' >"{bin}/$f"; chmod +x "{bin}/$f"
  done
  printf '#!{bash}\\nexit 0\\n' >"{bin}/python3"; chmod +x "{bin}/python3"
  echo "Need to get 33.1 MB of archives."
  echo "Setting up prometheus (2.42.0+ds-5) ..."
  echo "Setting up libjs-jquery (3.6.1) ..."
fi
"""


@pytest.fixture
def fake_machine(tmp_path: Path) -> dict[str, str]:
    """A PATH with basic tools, a fake apt-get, no Prometheus, and a python3 without venv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "date", "grep", "sed", "tee", "mkdir", "chmod", "rm", "sort", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    for tool in ("dirname", "basename"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    bash = str(bin_dir / "bash")
    calls = tmp_path / "apt-calls"
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT.format(bash=bash, calls=calls, bin=bin_dir))
    apt.chmod(0o755)
    (bin_dir / "python3").write_text(f"#!{bash}\nexit 1\n")  # no venv/ensurepip
    (bin_dir / "python3").chmod(0o755)
    return {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "MODELDEPLOY_CACHE": str(tmp_path / "cache"),
        "MODELDEPLOY_POLICY_RC_D": str(tmp_path / "policy-rc.d"),
        "calls": str(calls),
    }


def system_deps(env: dict[str, str], *packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [env["PATH"] + "/bash", str(REPO / "dev" / "build-tools.sh"), "--system-deps", *packages],
        env={k: v for k, v in env.items() if k != "calls"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def apt_calls(env: dict[str, str]) -> list[str]:
    path = Path(env["calls"])
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs as root only")
def test_system_deps_as_root_installs_only_the_missing_packages_once(
    fake_machine: dict[str, str],
) -> None:
    res = system_deps(fake_machine)
    assert res.returncode == 0, res.stderr
    assert apt_calls(fake_machine) == [
        "update -q",
        "install -y -q --no-install-recommends " + " ".join(PACKAGES),
    ]
    assert "Setting up prometheus" in res.stderr  # progress, briefly
    assert "libjs-jquery" not in res.stderr
    # The packages' services may not start during the install: a policy-rc.d said no, and it
    # is gone again afterwards.
    assert not Path(fake_machine["MODELDEPLOY_POLICY_RC_D"]).exists()

    again = system_deps(fake_machine)
    assert again.returncode == 0 and again.stderr == ""
    assert len(apt_calls(fake_machine)) == 2, "a second run must not call apt-get"


def test_system_deps_names_the_command_when_it_cannot_install(
    fake_machine: dict[str, str], tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        Path(fake_machine["PATH"], "apt-get").unlink()  # as root: a machine without apt-get
        res = system_deps(fake_machine, "prometheus")
        assert res.returncode == 1
        assert "Not a Debian/Ubuntu machine" in res.stderr
        assert "Prometheus >= 2.42" in res.stderr
        return
    res = system_deps(fake_machine, "prometheus", "python3-venv")
    assert res.returncode == 1
    assert (
        "apt-get update && apt-get install -y --no-install-recommends prometheus python3-venv"
        in res.stderr
    )
    assert apt_calls(fake_machine) == []
