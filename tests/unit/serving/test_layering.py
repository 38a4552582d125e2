import subprocess
import sys

CODE = """
import sys
import modeldeploy.serving.app, modeldeploy.serving.cli, modeldeploy.serving.loader
import modeldeploy.tracking
bad = sorted(m for m in sys.modules if m.split(".")[0] in {"kopf", "kubernetes"})
print(",".join(bad))
"""


def test_serving_runtime_imports_neither_kopf_nor_kubernetes() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
