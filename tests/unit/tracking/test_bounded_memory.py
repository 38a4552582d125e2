"""A file larger than the memory a process may use is still hashed: reading is streamed.

The child process imports modeldeploy.tracking and warms up on a small CSV (imports and pandas'
parser are one-time costs, not proportional to the file), then caps its address space at its
current size plus BUDGET and versions a FILE_MIB file. To prove the cap bites, the same child
then tries to read the whole file at once, which must fail with MemoryError.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

FILE_MIB = 256
BUDGET_MIB = 64

CHILD = """
import json, resource, sys, time
from modeldeploy.tracking import describe_dataset

small, big, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]) << 20
describe_dataset(small, name="warmup")

def vm_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

vsize = vm_kib("VmSize") << 10
resource.setrlimit(resource.RLIMIT_AS, (vsize + budget, vsize + budget))
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
v = describe_dataset(big, name="big")
seconds = time.perf_counter() - start
out = {"hash": v.hash, "rows": v.rows, "columns": v.columns, "seconds": seconds,
       "limit_mib": (vsize + budget) >> 20, "rss_peak_mib": vm_kib("VmHWM") >> 10,
       "rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before}
try:
    with open(big, "rb") as fh:
        data = fh.read()
    out["whole_read"] = len(data)
except MemoryError:
    out["whole_read"] = "MemoryError"
print(json.dumps(out))
"""


def write_csv(path: Path, mib: int) -> tuple[str, int]:
    """A CSV of `mib` MiB; returns its sha256 (computed in chunks) and its data rows."""
    block = "".join(f"{i},{i * 0.25:.2f},label{i % 7}\n" for i in range(40_000)).encode()
    lines_per_block = 40_000
    digest = hashlib.sha256(b"id,value,label\n")
    rows = 0
    with open(path, "wb") as fh:
        fh.write(b"id,value,label\n")
        while fh.tell() < mib << 20:
            fh.write(block)
            digest.update(block)
            rows += lines_per_block
    return digest.hexdigest(), rows


def test_file_larger_than_the_memory_limit_is_hashed_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    expected, rows = write_csv(big, FILE_MIB)
    small = tmp_path / "small.csv"
    small.write_text("id,value,label\n1,0.25,label1\n")

    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(small), str(big), str(BUDGET_MIB)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(out))  # shown with -s: throughput and memory for the docs

    assert out["whole_read"] == "MemoryError", "the memory limit did not bite"
    assert out["hash"] == expected
    assert (out["rows"], out["columns"]) == (rows, 3)
    assert big.stat().st_size > (BUDGET_MIB << 20) * 3
