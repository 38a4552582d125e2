"""Dataset versions: which data a training run saw, as a hash over all of it.

MLflow's own dataset digest (`mlflow.data.from_pandas(df).digest`) hashes the first 10,000 rows
only, so a frame changed at row 40,000 keeps its digest; a dataset version here changes when any
value (or, for files, any byte) changes. `log_dataset` records the version twice, where people
and tools look: as an MLflow dataset input (the run's "Datasets used" panel; MLflow's digest
field holds a prefix of our hash, as it allows 36 characters) and as the run tag
`modeldeploy.io/dataset.<name>`, a compact JSON record the lineage command reads.

Hash algorithms (docs/tracking.md spells out every byte):
* `sha256-file`: SHA-256 of the file's bytes, streamed in 1 MiB chunks (= `sha256sum`).
* `sha256-dir-v1`: SHA-256 of a `sha256sum`-style manifest of every file under a directory.
* `sha256-columns-v1`: SHA-256 over the frame's shape and, column by column, its name, dtype
  and exact values (numbers as little-endian bytes, NaN made canonical, strings as UTF-8 with
  lengths and a missing-value mask). The index is not hashed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import numpy as np

from modeldeploy.governance.records import timestamp
from modeldeploy.tracking.records import (
    DatasetError,
    DatasetVersion,
    SchemaField,
)

HASH_FILE: Final = "sha256-file"
HASH_DIRECTORY: Final = "sha256-dir-v1"
HASH_FRAME: Final = "sha256-columns-v1"
CHUNK_BYTES: Final = 1 << 20  # file read size
CHUNK_ROWS: Final = 1 << 16  # rows per slice when hashing a column: bounds temporary copies
SAMPLE_ROWS: Final = 1000  # rows read from a CSV/Parquet file to infer its schema
INPUT_TAG_HASH: Final = "modeldeploy.hash"
INPUT_TAG_ALGORITHM: Final = "modeldeploy.hashAlgorithm"
INPUT_TAG_ROWS: Final = "modeldeploy.rows"
_FRAME_MAGIC: Final = b"modeldeploy.columns.v1\n"
_CSV_SEPARATORS: Final = {".csv": ",", ".tsv": "\t"}
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
# The dataset name becomes part of a tag key: MLflow's key characters minus "/" and ":".
_NAME = re.compile(r"[\w][\w.\- ]{0,199}")


@dataclass(frozen=True)
class _Inspected:
    """What hashing found, plus what MLflow's dataset input needs (a frame or a sample)."""

    source: str | None
    hash: str
    algorithm: str
    rows: int | None
    schema: tuple[SchemaField, ...]
    frame: Any = None  # the DataFrame itself, for mlflow.data.from_pandas
    sample: Any = None  # the first rows of a file, for an MLflow schema


def describe_dataset(
    data_or_path: Any,
    *,
    name: str,
    source: str | None = None,
    context: str = "training",
    targets: str | None = None,
    now: datetime | None = None,
) -> DatasetVersion:
    """The dataset version `log_dataset` would record, without MLflow."""
    version, _ = _describe(data_or_path, name, source, context, targets, now)
    return version


def log_dataset(
    data_or_path: Any,
    *,
    name: str,
    source: str | None = None,
    context: str = "training",
    targets: str | None = None,
) -> DatasetVersion:
    """Record a dataset version in the active MLflow run: a dataset input and a run tag.

    `data_or_path` is a pandas DataFrame or Series, a 1-D/2-D numpy array, or a local file or
    directory (str or Path). `source` is where the data came from (a URI), if not the path.
    Needs an active run (`with mlflow.start_run():`): a run started implicitly would never be
    ended and the record would land where nobody looks.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_dataset needs an active MLflow run: call it in mlflow.start_run()")
    version, found = _describe(data_or_path, name, source, context, targets, None)
    tags = {INPUT_TAG_HASH: version.hash, INPUT_TAG_ALGORITHM: version.hash_algorithm}
    if version.rows is not None:
        tags[INPUT_TAG_ROWS] = str(version.rows)
    with warnings.catch_warnings():
        # MLflow's schema inference hints at model signatures; a dataset record is not one.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        mlflow.log_input(_mlflow_dataset(version, found), context=context, tags=tags)
    mlflow.set_tag(version.tag_key, version.tag_value())
    return version


def _describe(
    data: Any,
    name: str,
    source: str | None,
    context: str,
    targets: str | None,
    now: datetime | None,
) -> tuple[DatasetVersion, _Inspected]:
    if not _NAME.fullmatch(name) or name != name.strip():
        raise DatasetError(
            f"dataset name {name!r}: 1-200 letters, digits, _ - . or spaces (it becomes part of "
            "a tag key)"
        )
    found = _inspect(data, source)
    if targets is not None and found.schema and targets not in {f.name for f in found.schema}:
        raise DatasetError(f"targets {targets!r} is not a column of dataset {name!r}")
    version = DatasetVersion(
        name=name,
        source=found.source,
        hash=found.hash,
        hash_algorithm=found.algorithm,
        rows=found.rows,
        columns=len(found.schema),
        schema=found.schema,
        logged_at=timestamp(now or datetime.now(UTC)),
        context=context,
        targets=targets,
    )
    return version, found


def _inspect(data: Any, source: str | None) -> _Inspected:
    import pandas as pd

    if isinstance(data, np.ndarray):
        if data.ndim not in (1, 2):
            raise DatasetError(f"numpy arrays of 1 or 2 dimensions only, not {data.ndim}")
        data = pd.DataFrame(data)  # columns 0..k-1: hashes as that DataFrame would
    elif isinstance(data, pd.Series):
        data = data.to_frame()
    if isinstance(data, pd.DataFrame):
        schema = tuple(SchemaField(str(c), str(t)) for c, t in data.dtypes.items())
        return _Inspected(source, hash_frame(data), HASH_FRAME, len(data), schema, frame=data)
    if isinstance(data, str | os.PathLike):
        path = _local_path(os.fspath(data))
        where = source if source is not None else str(path.resolve())
        if path.is_dir():
            return _Inspected(where, hash_directory(path), HASH_DIRECTORY, None, ())
        if not path.is_file():
            raise DatasetError(f"{path}: no such file or directory")
        return _inspect_file(path, where)
    raise DatasetError(
        f"cannot version a {type(data).__name__}: pass a pandas DataFrame or Series, a numpy "
        "array, or the path of a local file or directory"
    )


def _local_path(text: str) -> Path:
    """A local path, or a clear refusal for remote URIs (we never download or stream them)."""
    parsed = urlparse(text)
    if os.path.exists(text):
        return Path(text)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if len(parsed.scheme) > 1:  # one letter is a Windows drive
        raise DatasetError(
            f"{text}: not a local path. Copy the data locally and pass the local copy, with "
            f"source={text!r} so the record says where it came from"
        )
    return Path(text)


# --- files -------------------------------------------------------------------------------


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 of a file's bytes and its number of lines (a last line without a newline counts),
    reading 1 MiB at a time into one buffer: memory stays bounded whatever the file's size."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    newlines = 0
    last = b"\n"
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view) or 0:
            digest.update(view[:n])
            newlines += buf.count(b"\n", 0, n)
            last = bytes(view[n - 1 : n])
    return digest.hexdigest(), newlines + (last != b"\n")


def _inspect_file(path: Path, source: str) -> _Inspected:
    digest, lines = hash_file(path)
    suffix = path.suffix.lower()
    if suffix in _CSV_SEPARATORS:
        sample = _csv_sample(path, _CSV_SEPARATORS[suffix])
        data_rows = max(lines - 1, 0)  # minus the header
        return _Inspected(source, digest, HASH_FILE, data_rows, _schema_of(sample), sample=sample)
    if suffix in _PARQUET_SUFFIXES:
        footer_rows, sample = _parquet_facts(path)
        schema = _schema_of(sample) if sample is not None else ()
        return _Inspected(source, digest, HASH_FILE, footer_rows, schema, sample=sample)
    return _Inspected(source, digest, HASH_FILE, None, ())


def _csv_sample(path: Path, sep: str) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path, sep=sep, nrows=SAMPLE_ROWS)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read its header and first rows: {exc}") from exc


def _parquet_facts(path: Path) -> tuple[int | None, Any]:
    """Rows from the footer and a sample of the first rows; (None, None) without pyarrow."""
    try:
        pq = importlib.import_module("pyarrow.parquet")  # optional, and without type hints
    except ImportError:
        return None, None
    try:
        pf = pq.ParquetFile(path)
        batch = next(pf.iter_batches(batch_size=SAMPLE_ROWS), None)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc
    rows = int(pf.metadata.num_rows)
    sample = batch.to_pandas() if batch is not None else pf.schema_arrow.empty_table().to_pandas()
    return rows, sample


def _schema_of(frame: Any) -> tuple[SchemaField, ...]:
    return tuple(SchemaField(str(c), str(t)) for c, t in frame.dtypes.items())


def hash_directory(root: str | os.PathLike[str]) -> str:
    """SHA-256 of the manifest `sha256sum` would print for every file under `root`, sorted by
    relative path (UTF-8 bytes), '/'-separated: `<hex>  <path>\\n` per file. Symlinks to files
    are hashed as their target; symlinked directories are not entered; empty directories do
    not count."""
    base = Path(root)
    entries: list[tuple[bytes, Path]] = []
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for fname in files:
            full = Path(folder, fname)
            rel = full.relative_to(base).as_posix()
            if "\n" in rel or "\\" in rel:
                raise DatasetError(f"{full}: file names with a newline or backslash not supported")
            entries.append((rel.encode("utf-8", "surrogateescape"), full))
    manifest = hashlib.sha256()
    for rel_bytes, full in sorted(entries):
        manifest.update(hash_file(full)[0].encode() + b"  " + rel_bytes + b"\n")
    return manifest.hexdigest()


# --- frames ------------------------------------------------------------------------------


def hash_frame(df: Any) -> str:
    """SHA-256 over the frame's shape, then per column its name, dtype and every value.

    Vectorised per column, exact for every row, independent of memory layout (each slice is
    made contiguous). The index is left out: models train on the columns, and a filtered or
    re-read frame must keep its version; `reset_index()` first if the index is data.
    """
    rows, cols = df.shape
    digest = hashlib.sha256(_FRAME_MAGIC)
    digest.update(struct.pack("<QQ", rows, cols))
    for i in range(cols):
        column = df.iloc[:, i]
        _field(digest, str(df.columns[i]))
        _field(digest, _dtype_name(column.dtype))
        _hash_values(digest, column, str(df.columns[i]))
    return digest.hexdigest()


def _dtype_name(dtype: Any) -> str:
    """pandas' name of the dtype, byte order left out (values are hashed little-endian)."""
    if isinstance(dtype, np.dtype) and dtype.byteorder in "<>":
        return str(dtype.newbyteorder("="))
    return str(dtype)


def _field(digest: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    digest.update(struct.pack("<Q", len(data)))
    digest.update(data)


def _hash_values(digest: Any, s: Any, column: str) -> None:
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = pd.Series(dtype.categories)
        digest.update(struct.pack("<?Q", bool(dtype.ordered), len(categories)))
        _field(digest, _dtype_name(categories.dtype))
        _hash_values(digest, categories, column)
        _hash_numbers(digest, s.cat.codes.to_numpy(), column, as_dtype=np.dtype("<i8"))
    elif isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        _hash_numbers(digest, s.to_numpy(), column)
    elif isinstance(dtype, pd.DatetimeTZDtype):
        _hash_numbers(digest, s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), column)
    elif _is_strings(s):
        digest.update(b"S")
        _hash_strings(digest, s)
    elif getattr(dtype, "numpy_dtype", None) is not None and dtype.kind in "biuf":
        # nullable (masked or Arrow) numbers and booleans: the missing mask, then values
        digest.update(s.isna().to_numpy(dtype=bool).view(np.uint8))
        _hash_numbers(digest, s.to_numpy(dtype=dtype.numpy_dtype, na_value=0), column)
    else:
        digest.update(b"O")
        _hash_strings(digest, pd.Series([_typed_text(v, column) for v in s], dtype=object))


def _is_strings(s: Any) -> bool:
    import pandas as pd

    if s.dtype != object:
        return bool(pd.api.types.is_string_dtype(s.dtype))  # str, string, Arrow strings
    return pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")


def _hash_numbers(digest: Any, arr: Any, column: str, as_dtype: Any = None) -> None:
    """Little-endian bytes of each value; every NaN as the one canonical quiet NaN."""
    if arr.dtype.kind in "fc" and arr.dtype.itemsize > (8 if arr.dtype.kind == "f" else 16):
        raise DatasetError(f"column {column!r}: {arr.dtype} has padding bytes; use float64")
    little = as_dtype if as_dtype is not None else arr.dtype.newbyteorder("<")
    floats = np.dtype(f"<f{little.itemsize // 2}") if little.kind == "c" else None
    for start in range(0, len(arr), CHUNK_ROWS):
        part = np.ascontiguousarray(arr[start : start + CHUNK_ROWS], dtype=little)
        if part.dtype.kind in "fc":
            flat = part.view(floats) if floats is not None else part
            nan = np.isnan(flat)
            if nan.any():
                flat = flat.copy()
                flat[nan] = np.nan
                part = flat
        digest.update(part.view(np.uint8))


def _hash_strings(digest: Any, s: Any) -> None:
    """The missing mask (one byte per row), every length in code points (int64), then the
    UTF-8 of all values concatenated (missing as ""): unambiguous, and the same bytes whether
    pandas stores the strings as Python objects or in Arrow."""
    digest.update(s.isna().to_numpy(dtype=bool).view(np.uint8))
    for part in _slices(s):
        lengths = part.str.len().fillna(0).to_numpy(dtype="<i8")
        digest.update(lengths.view(np.uint8))
    for part in _slices(s):
        text = "".join(part.to_numpy(dtype=object, na_value=""))
        digest.update(text.encode("utf-8", "surrogatepass"))


def _slices(s: Any) -> Iterator[Any]:
    for start in range(0, len(s), CHUNK_ROWS):
        yield s.iloc[start : start + CHUNK_ROWS]


def _typed_text(value: Any, column: str) -> str:
    """`module.Type:text` for one value of a mixed object column (the slow, per-value path)."""
    kind = type(value)
    if isinstance(value, set | frozenset):
        raise DatasetError(f"column {column!r}: sets have no stable order; convert them")
    text = repr(value) if isinstance(value, float) else str(value)
    if " at 0x" in text:  # <function f at 0x…>, <… object at 0x…>: differs per process
        raise DatasetError(
            f"column {column!r}: {kind.__qualname__} values have no stable text form; convert "
            "the column to strings or numbers"
        )
    return f"{kind.__module__}.{kind.__qualname__}:{text}"


# --- MLflow ------------------------------------------------------------------------------


def _mlflow_dataset(version: DatasetVersion, found: _Inspected) -> Any:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.pandas_dataset import from_pandas

    src = _mlflow_source(version.source) if version.source is not None else None
    if found.frame is not None:
        where: dict[str, Any] = {} if src is None else {"source": src}  # None: the calling code
        dataset = from_pandas(
            found.frame,
            **where,
            name=version.name,
            targets=version.targets,
            digest=version.mlflow_digest,
        )
        lazy = inspect.getattr_static(type(dataset), "schema", None)
        if len(found.frame) > SAMPLE_ROWS and isinstance(lazy, cached_property):
            dataset.__dict__["schema"] = _frame_schema(found.frame)
        return dataset
    assert src is not None  # files and directories always have a source
    schema = _mlflow_schema(found.sample)
    # MLflow's stubs leave `profile` abstract on MetaDataset; the class is concrete at runtime.
    return MetaDataset(src, name=version.name, digest=version.mlflow_digest, schema=schema)  # type: ignore[abstract]


def _frame_schema(frame: Any) -> Any:
    """MLflow infers a frame's schema value by value in Python (seconds per million rows of
    text, for every column); the types come from the first rows here, and `required` (no value
    missing) from the whole column, vectorised."""
    from mlflow.types import ColSpec, Schema

    sampled = _mlflow_schema(frame.head(SAMPLE_ROWS))
    if sampled is None or len(sampled.inputs) != frame.shape[1]:
        return None
    missing = frame.isna().any().to_numpy()
    return Schema(
        [
            ColSpec(spec.type, spec.name, required=not bool(missing[i]))
            for i, spec in enumerate(sampled.inputs)
        ]
    )


def _mlflow_schema(sample: Any) -> Any:
    """MLflow's schema of a file's first rows, for the UI; None when it cannot infer one."""
    if sample is None or sample.empty:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    try:
        return infer_signature(sample).inputs
    except (MlflowException, TypeError, ValueError):
        return None


def _mlflow_source(uri: str) -> Any:
    """MLflow's DatasetSource for a path or URI; MLflow resolves local paths, s3://, gs://,
    http(s)://...; any other URI is kept as given in a plain `uri` source."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():
        # MLflow registers its local source twice and warns about the ambiguity on every path.
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
        try:
            return resolve_dataset_source(uri)
        except MlflowException:
            return _uri_source_class()(uri)


@cache
def _uri_source_class() -> type:
    from mlflow.data.dataset_source import DatasetSource

    class UriDatasetSource(DatasetSource):
        """A URI MLflow has no source type for (delta://, hf://, dbfs:/...): kept as text."""

        def __init__(self, uri: str) -> None:
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return "uri"

        def load(self) -> Any:
            raise NotImplementedError(f"modeldeploy does not download {self.uri}")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> Any:
            return cls(str(source_dict["uri"]))

    return UriDatasetSource
