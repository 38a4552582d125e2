"""Builds the operator and serving images with podman, on a machine without Docker or a
reachable image registry (`make images`; tests/images uses the same functions).

- podman runs rootful with `--runtime runc`, `--storage-driver vfs` and a containers.conf (via
  CONTAINERS_CONF) that sets `default_ulimits = []` and `cgroup_manager = "cgroupfs"` (crun
  fails on this kind of machine: cgroups in hybrid mode). Its image storage lives in the cache
  outside the repo, one folder per podman version and storage driver, so a second build reuses
  the layers of the first (the run-time state, runroot, is under /run):
      $MODELDEPLOY_CACHE/podman-<version>-<driver>/{containers.conf,root}
- The base image is not pulled (no registry is reachable): mmdebstrap builds a root filesystem
  from Debian's packages (IMAGE_BASE_SUITE and IMAGE_BASE_PACKAGES in dev/versions.env) and
  `podman import` turns it into localhost/modeldeploy-base:<suite>-<hash of the package list>.
  The tarball is cached too ($MODELDEPLOY_CACHE/images/), keyed the same way.
- The Dockerfiles take the base as the build ARG BASE_IMAGE (default: the public
  python:3.11-slim that Docker users pull); this script passes the local one. pip inside the
  build reaches PyPI over the host's network, trusting the CA bundle the host's pip trusts
  (`ca_bundle_options`).

Usage: python dev/container_images.py build [operator|serving ...] [--cache DIR]
       python dev/container_images.py podman ARG...   # podman with the same storage and flags
Only the standard library: it runs before the venv exists as well as after.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = ("operator", "serving")
DEFAULT_DRIVER = "overlay"
CONTAINERS_CONF = """\
# Written by dev/container_images.py. crun fails here (cgroups hybrid mode): podman runs with
# --runtime runc, and these two settings make runc start containers on such a machine.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
"""


def log(message: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "dev" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out


def default_cache() -> Path:
    return Path(os.environ.get("MODELDEPLOY_CACHE") or Path.home() / ".cache" / "modeldeploy")


def package_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def image_tag(name: str) -> str:
    """The local tag `make images` gives an image: localhost/modeldeploy-<name>:<version>."""
    return f"localhost/modeldeploy-{name}:{package_version()}"


def missing_tools() -> list[str]:
    """What this machine lacks to build and run the images, as sentences; empty when nothing."""
    return [
        f"{tool} is not installed (Debian package {tool}: "
        f"`dev/build-tools.sh --system-deps podman runc mmdebstrap`, as root)"
        for tool in ("podman", "runc", "mmdebstrap")
        if shutil.which(tool) is None
    ]


@dataclass(frozen=True)
class Podman:
    """podman with this project's storage and flags. `argv(...)` is a full command line."""

    cache: Path
    version: str
    driver: str  # storage driver: overlay or vfs

    @classmethod
    def find(cls, cache: Path | None = None) -> Podman:
        missing = missing_tools()
        if missing:
            raise SystemExit("; ".join(missing))
        out = subprocess.run(
            ["podman", "--version"], capture_output=True, text=True, check=True
        ).stdout
        m = re.search(r"(\d+\.\d+\.\d+)", out)
        version = m.group(1) if m else "unknown"
        driver = os.environ.get("MODELDEPLOY_PODMAN_STORAGE_DRIVER") or DEFAULT_DRIVER
        podman = cls(cache=cache or default_cache(), version=version, driver=driver)
        podman.home.mkdir(parents=True, exist_ok=True)
        conf = podman.home / "containers.conf"
        if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
            conf.write_text(CONTAINERS_CONF)
        return podman

    @property
    def home(self) -> Path:
        return self.cache / f"podman-{self.version}-{self.driver}"

    @property
    def runroot(self) -> Path:
        """Run-time state (locks, mounts): under /run, gone after a reboot as it should be, and
        short (overlay refuses a runroot longer than 50 characters)."""
        run = Path(os.environ.get("XDG_RUNTIME_DIR") or "/run")
        key = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:8]  # one per storage
        return run / f"modeldeploy-podman-{self.version}-{self.driver}-{key}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.home / "containers.conf")}

    def argv(self, *args: str) -> list[str]:
        return [
            "podman",
            "--runtime",
            shutil.which("runc") or "runc",
            "--storage-driver",
            self.driver,
            "--root",
            str(self.home / "root"),
            "--runroot",
            str(self.runroot),
            *args,
        ]

    def run(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            env=self.env,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            detail = f"\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}" if capture else ""
            raise SystemExit(f"podman {' '.join(args[:3])} ... exited {proc.returncode}{detail}")
        return proc

    def exists(self, tag: str) -> bool:
        return self.run("image", "exists", tag, check=False).returncode == 0

    def size(self, tag: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def base_image(podman: Podman) -> str:
    """The local base image, built from Debian's packages the first time (about 30 s for the
    root filesystem, 10 s for the import) and reused while suite and package list stay."""
    versions = read_versions()
    suite = versions["IMAGE_BASE_SUITE"]
    packages = sorted(versions["IMAGE_BASE_PACKAGES"].split())
    key = hashlib.sha256(f"{suite} {' '.join(packages)}".encode()).hexdigest()[:12]
    tag = f"localhost/modeldeploy-base:{suite}-{key}"
    if podman.exists(tag):
        return tag
    tarball = podman.cache / "images" / f"base-{suite}-{key}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_name(f"{tarball.stem}.partial.tar")  # mmdebstrap: format by suffix
        log(f"base: mmdebstrap {suite} with {', '.join(packages)} (about 30 s)")
        t0 = time.monotonic()
        proc = subprocess.run(
            [
                "mmdebstrap",
                "--variant=apt",
                f"--include={','.join(packages)}",
                # Documentation and translations are no use in an image.
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                suite,
                str(partial),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            raise SystemExit(f"mmdebstrap exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        partial.rename(tarball)
        log(f"base: root filesystem in {time.monotonic() - t0:.0f}s ({tarball})")
    log(f"base: podman import as {tag}")
    podman.run("import", str(tarball), tag)
    return tag


BUILD_CA_PATH = "/etc/ssl/certs/modeldeploy-build-ca.pem"


def ca_bundle_options() -> list[str]:
    """On a network that intercepts TLS, the host trusts an extra CA through PIP_CERT,
    REQUESTS_CA_BUNDLE or SSL_CERT_FILE; pip inside the build must trust it too. The bundle is
    mounted for the build's RUN steps only and named by the build ARG PIP_CERT: no image layer
    holds it. Nothing is passed when the host names no bundle."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(var)
        if path and Path(path).is_file():
            return [
                f"--volume={Path(path).resolve()}:{BUILD_CA_PATH}:ro",
                f"--build-arg=PIP_CERT={BUILD_CA_PATH}",
            ]
    return []


@dataclass(frozen=True)
class Built:
    name: str
    tag: str
    size: int  # bytes, as `podman image inspect --format {{.Size}}` reports
    seconds: float


def build(
    names: Sequence[str] = IMAGES, *, podman: Podman | None = None, quiet: bool = False
) -> list[Built]:
    """Builds the named images from images/<name>/Dockerfile (context: the repository root) on
    the local base; layers of earlier builds are reused."""
    podman = podman or Podman.find()
    base = base_image(podman)
    out = []
    for name in names:
        if name not in IMAGES:
            raise SystemExit(f"unknown image {name!r}: one of {', '.join(IMAGES)}")
        tag = image_tag(name)
        log(f"{name}: podman build -t {tag} (base {base})")
        t0 = time.monotonic()
        podman.run(
            "build",
            "--network=host",
            "--pull=never",
            "--layers",
            f"--build-arg=BASE_IMAGE={base}",
            f"--file={REPO / 'images' / name / 'Dockerfile'}",
            f"--ignorefile={REPO / 'images' / name / 'Dockerfile.dockerignore'}",
            f"--tag={tag}",
            *ca_bundle_options(),
            str(REPO),
            capture=quiet,
        )
        seconds = time.monotonic() - t0
        built = Built(name, tag, podman.size(tag), seconds)
        log(f"{name}: built in {seconds:.0f}s, {built.size / 1e6:.0f} MB")
        out.append(built)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the images (all by default) and print their sizes")
    b.add_argument("names", nargs="*", metavar="IMAGE", help=f"of {', '.join(IMAGES)}")
    b.add_argument("--cache", type=Path, help="cache folder (default $MODELDEPLOY_CACHE)")
    p = sub.add_parser("podman", help="run podman with the storage and flags the build uses")
    p.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "podman":
        podman = Podman.find()
        return subprocess.run(podman.argv(*args.args), env=podman.env, check=False).returncode
    t0 = time.monotonic()
    built = build(args.names or list(IMAGES), podman=Podman.find(args.cache))
    print(f"{'image':<40} {'size':>10} {'build':>8}")
    for b_ in built:
        print(f"{b_.tag:<40} {b_.size / 1e6:>7.0f} MB {b_.seconds:>7.0f}s")
    print(f"total {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
