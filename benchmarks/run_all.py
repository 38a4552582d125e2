"""Run every benchmark in benchmarks/ (`*_bench.py`) and rewrite docs/benchmarks.md.

Each benchmark script takes `--markdown PATH` and writes its own section there; this script
runs them one after another (never in parallel: they would measure each other) and joins the
sections under a common header. Extra arguments are passed to every benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Written by `make bench` (`benchmarks/run_all.py`), which runs every `benchmarks/*_bench.py` in
turn. Numbers depend on the machine and on what else it runs; each section says where and how
it was measured. Rerun them rather than trusting old numbers.
"""


def main(argv: list[str]) -> int:
    sections: list[str] = []
    failed: list[str] = []
    for script in sorted(HERE.glob("*_bench.py")):
        with tempfile.NamedTemporaryFile(suffix=".md") as out:
            started = time.monotonic()
            print(f"== {script.name}", file=sys.stderr)
            res = subprocess.run([sys.executable, str(script), "--markdown", out.name, *argv])
            if res.returncode != 0:
                failed.append(script.name)
                continue
            sections.append(Path(out.name).read_text())
            print(f"   {time.monotonic() - started:.0f} s", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}; docs/benchmarks.md left as it was", file=sys.stderr)
        return 1
    notes = HERE / "NOTES.md"
    extra = "\n" + notes.read_text() if notes.exists() else ""
    DOC.write_text(HEADER + "\n" + "\n".join(sections) + extra)
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
