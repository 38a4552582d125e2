"""Run the benchmarks in benchmarks/ (`*_bench.py`) and rewrite docs/benchmarks.md.

Each benchmark script takes `--markdown PATH` and writes its own section there; this script
runs them one after another (never in parallel: they would measure each other) and joins the
sections under a common header, each between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
(NAME: the script's name without `_bench.py`). `--only NAME ...` runs some of them: the sections
of the others are kept as the document has them, so re-measuring one part loses nothing. The
hand-written benchmarks/NOTES.md is appended after the sections. Arguments this script does not
know are passed to every benchmark it runs.

Every benchmark also takes `--smoke`: one short sample of every measurement, no figures written,
exit 0 when it worked and non-zero with a message otherwise. tests/e2e/test_benchmarks_smoke.py
runs each one's, so a change that breaks a benchmark fails the test suite.

Usage: python benchmarks/run_all.py [--only NAME ...] [benchmark arguments]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Written by `make bench` (`benchmarks/run_all.py`), which runs every `benchmarks/*_bench.py` in
turn (`make bench ONLY="rollback operator_scale"`: only those, the other sections kept). Numbers
depend on the machine and on what else it runs; each section says where and how it was measured.
Rerun them rather than trusting old numbers.
"""
SECTION = re.compile(r"<!-- bench:([\w-]+) -->\n(.*?)<!-- /bench:\1 -->\n", re.DOTALL)


def benchmarks() -> dict[str, Path]:
    """Every benchmark by name, in the order they run and their sections appear."""
    return {p.name.removesuffix("_bench.py"): p for p in sorted(HERE.glob("*_bench.py"))}


def sections(doc: str) -> dict[str, str]:
    """The delimited sections of a document `join` wrote, by benchmark name."""
    return {m.group(1): m.group(2) for m in SECTION.finditer(doc)}


def join(found: dict[str, str], names: list[str], notes: str) -> str:
    """The document: the header, the sections of `names` that have one (in that order), then the
    notes."""
    body = "".join(
        f"<!-- bench:{n} -->\n{found[n].rstrip()}\n\n<!-- /bench:{n} -->\n\n"
        for n in names
        if n in found
    )
    return HEADER + "\n" + body + notes


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    known = benchmarks()
    p.add_argument(
        "--only",
        nargs="+",
        choices=sorted(known),
        metavar="NAME",
        help=f"run only these (of {', '.join(sorted(known))}); keep the others' sections",
    )
    args, passed = p.parse_known_args(argv)
    chosen = args.only or list(known)
    found = sections(DOC.read_text()) if DOC.exists() else {}
    failed: list[str] = []
    for name in chosen:
        script = known[name]
        with tempfile.NamedTemporaryFile(suffix=".md") as out:
            started = time.monotonic()
            print(f"== {script.name}", file=sys.stderr)
            res = subprocess.run([sys.executable, str(script), "--markdown", out.name, *passed])
            if res.returncode != 0:
                failed.append(script.name)
                continue
            found[name] = Path(out.name).read_text()
            print(f"   {time.monotonic() - started:.0f} s", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}; docs/benchmarks.md left as it was", file=sys.stderr)
        return 1
    notes = HERE / "NOTES.md"
    DOC.write_text(join(found, list(known), notes.read_text() if notes.exists() else ""))
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
