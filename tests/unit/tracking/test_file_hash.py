"""Dataset versions of files and directories: the hash is sha256 of the bytes (a directory: of
a sha256sum manifest), rows are counted while streaming, the schema comes from a sample."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modeldeploy.tracking.dataset import (
    CHUNK_BYTES,
    HASH_DIRECTORY,
    HASH_FILE,
    DatasetError,
    describe_dataset,
    hash_directory,
    hash_file,
)


def test_file_hash_is_sha256_of_the_bytes_across_chunk_boundaries(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(3 * CHUNK_BYTES + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    v = describe_dataset(path, name="blob")
    assert v.hash == hashlib.sha256(data).hexdigest()
    assert (v.hash_algorithm, v.rows, v.columns, v.schema) == (HASH_FILE, None, 0, ())
    assert v.source == str(path.resolve())


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("a,b\n1,2\n3,4\n", 2),
        ("a,b\n1,2\n3,4", 2),  # no final newline: the last line still counts
        ("a,b\r\n1,2\r\n3,4\r\n", 2),
        ("a,b\n", 0),
        ("a,b", 0),
        ("", 0),
    ],
)
def test_csv_rows_are_lines_minus_the_header(tmp_path: Path, text: str, rows: int) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(text.encode())
    v = describe_dataset(path, name="d")
    assert v.rows == rows
    assert v.hash == hashlib.sha256(text.encode()).hexdigest()


def test_csv_rows_are_counted_over_many_chunks(tmp_path: Path) -> None:
    rows = 200_000
    df = pd.DataFrame({"a": np.arange(rows), "b": np.arange(rows) * 0.5})
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False)
    assert path.stat().st_size > 2 * CHUNK_BYTES
    assert describe_dataset(path, name="big").rows == rows
    assert hash_file(path)[1] == rows + 1


def test_csv_and_tsv_schema_from_the_header_and_a_sample(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("age,city,score\n31,Oslo,0.5\n40,Rome,1.5\n")
    (tmp_path / "d.tsv").write_text("age\tcity\n31\tOslo\n")
    csv = describe_dataset(tmp_path / "d.csv", name="d", targets="score")
    assert [(f.name, f.type) for f in csv.schema] == [
        ("age", "int64"),
        ("city", "str"),
        ("score", "float64"),
    ]
    assert csv.columns == 3
    tsv = describe_dataset(tmp_path / "d.tsv", name="d")
    assert [f.name for f in tsv.schema] == ["age", "city"] and tsv.rows == 1
    with pytest.raises(DatasetError, match="not a column"):
        describe_dataset(tmp_path / "d.csv", name="d", targets="label")


def test_parquet_rows_and_schema_come_from_its_footer(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    table = pa.table({"x": np.arange(5000, dtype="int32"), "s": ["a", "b"] * 2500})
    pq.write_table(table, path, row_group_size=1000)
    v = describe_dataset(path, name="d")
    assert v.rows == 5000 and v.columns == 2
    assert [f.name for f in v.schema] == ["x", "s"]
    assert v.hash == hashlib.sha256(path.read_bytes()).hexdigest()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def manifest_hash(files: dict[str, bytes]) -> str:
    """What `find . -type f | sort | xargs sha256sum | sha256sum` computes, by hand."""
    lines = [
        f"{hashlib.sha256(data).hexdigest()}  {rel}\n"
        for rel, data in sorted(files.items(), key=lambda kv: kv[0].encode())
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_directory_hash_is_a_sha256sum_manifest(tmp_path: Path) -> None:
    files = {"b.csv": b"x\n1\n", "a/part-0.parquet": b"PAR1", "a/Z.txt": b"", "é.txt": b"e"}
    write_tree(tmp_path / "d", files)
    (tmp_path / "d" / "empty-dir").mkdir()
    v = describe_dataset(tmp_path / "d", name="d")
    assert v.hash == manifest_hash(files)
    shell = subprocess.run(  # the command docs/tracking.md gives
        "find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        shell=True,
        cwd=tmp_path / "d",
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split()[0] == v.hash
    assert (v.hash_algorithm, v.rows, v.columns) == (HASH_DIRECTORY, None, 0)


def test_directory_hash_changes_with_content_names_and_files(tmp_path: Path) -> None:
    files = {"a.csv": b"x\n1\n", "sub/b.csv": b"x\n2\n"}
    variants = [
        files,
        {**files, "a.csv": b"x\n9\n"},
        {"a2.csv": files["a.csv"], "sub/b.csv": files["sub/b.csv"]},
        {**files, "c.csv": b""},
        {"a.csv": files["a.csv"]},
    ]
    hashes = []
    for i, variant in enumerate(variants):
        write_tree(tmp_path / str(i), variant)
        hashes.append(hash_directory(tmp_path / str(i)))
    assert len(set(hashes)) == len(variants)
    # Same content written in another order: same hash.
    write_tree(tmp_path / "again", dict(reversed(list(files.items()))))
    assert hash_directory(tmp_path / "again") == hashes[0]


def test_directory_follows_symlinks_to_files_only(tmp_path: Path) -> None:
    write_tree(tmp_path / "real", {"a.csv": b"1"})
    write_tree(tmp_path / "d", {"a.csv": b"1"})
    (tmp_path / "d" / "link.csv").symlink_to(tmp_path / "real" / "a.csv")
    (tmp_path / "d" / "linked-dir").symlink_to(tmp_path / "real", target_is_directory=True)
    assert hash_directory(tmp_path / "d") == manifest_hash({"a.csv": b"1", "link.csv": b"1"})


@pytest.mark.parametrize("uri", ["s3://bucket/train.csv", "gs://b/x.parquet", "https://h/x.csv"])
def test_remote_uris_are_refused_with_what_to_do(uri: str) -> None:
    with pytest.raises(DatasetError, match=r"pass the local copy, with source="):
        describe_dataset(uri, name="d")


def test_local_copy_keeps_the_remote_source(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a\n1\n")
    v = describe_dataset(path, name="d", source="s3://bucket/d.csv")
    assert v.source == "s3://bucket/d.csv"
    assert describe_dataset(f"file://{path}", name="d").hash == v.hash


def test_missing_paths_and_other_objects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        describe_dataset(tmp_path / "nope.csv", name="d")
    with pytest.raises(DatasetError, match="cannot version a dict"):
        describe_dataset({"a": [1]}, name="d")


def test_unreadable_parquet_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(os.urandom(64))
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        describe_dataset(path, name="d")
