"""What the operator benchmarks share, light to import (no MLflow, no test fixtures): a
benchmark's --help and the test suite's smoke runs should not pay for what they do not use."""

from __future__ import annotations

import contextlib
import os
import platform
import uuid
from typing import Any


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def new_namespace(kube: Any, prefix: str) -> str:
    """A namespace named `prefix-<5 hex>`; `kube`: tests/integration/operator/conftest.py's Kube."""
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kube.core.create_namespace({"metadata": {"name": name}})
    return name
