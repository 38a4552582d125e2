"""Fixtures for the image tests: podman as dev/container_images.py (`make images`) runs it, both
images built once per session through the same functions, and a container runner that removes
what it started.

The chart helpers (`tools`: the pinned helm and kubectl) and the operator helpers (`crd`,
`registry`, `kube`) are the integration tests' own, imported here rather than copied."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import container_images
import pytest

from tests.conftest import IN_CI
from tests.integration.chart.conftest import tools
from tests.integration.operator.conftest import crd, kube, registry

__all__ = ["Containers", "crd", "images", "kube", "podman", "registry", "tools"]


@pytest.fixture(scope="session")
def podman() -> container_images.Podman:
    """podman with the build's storage; missing tools fail under CI=true and skip locally,
    saying how to install them."""
    missing = container_images.missing_tools()
    if missing:
        message = "; ".join(missing)
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(f"{message} (under CI=true this is a failure)")
    return container_images.Podman.find()


@pytest.fixture(scope="session")
def images(podman: container_images.Podman) -> dict[str, container_images.Built]:
    """Both images, built as `make images` builds them (cached layers are reused)."""
    try:
        built = container_images.build(podman=podman, quiet=True)
    except SystemExit as exc:  # the build script's way of saying what failed
        pytest.fail(f"building the images failed: {exc}", pytrace=False)
    return {b.name: b for b in built}


@dataclass
class Containers:
    """`podman run -d` under unique names; `stop_all` removes every container it started."""

    podman: container_images.Podman
    started: list[str] = field(default_factory=list)

    def run(self, image: str, *args: str, options: tuple[str, ...] = ()) -> str:
        name = f"modeldeploy-test-{uuid.uuid4().hex[:8]}"
        self.started.append(name)
        self.podman.run("run", "--detach", "--name", name, *options, image, *args)
        return name

    def running(self, name: str) -> bool:
        proc = self.podman.run(
            "container", "inspect", "--format", "{{.State.Running}}", name, check=False
        )
        return proc.stdout.strip() == "true"

    def logs(self, name: str, tail: int | None = 6000) -> str:
        proc = self.podman.run("logs", name, check=False)
        text = proc.stdout + proc.stderr
        return text if tail is None else text[-tail:]

    def exec(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.podman.run("exec", name, *argv, check=False)

    def stop_all(self) -> None:
        for name in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.podman.run("rm", "--force", "--time", "5", name, check=False, timeout=60)


@pytest.fixture
def containers(podman: container_images.Podman) -> Iterator[Containers]:
    c = Containers(podman)
    yield c
    c.stop_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The image tests build images for minutes (docs/install.md, "Images"): they run when the
    marker expression names them (`make test-images`: -m images), and are deselected, counted
    as such in the summary, otherwise."""
    if "images" in (config.getoption("markexpr") or ""):
        return
    deselected = [i for i in items if i.get_closest_marker("images") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [i for i in items if i.get_closest_marker("images") is None]
