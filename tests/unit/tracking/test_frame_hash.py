"""Dataset versions of in-memory data: one value changed anywhere changes the hash; the same
data, however it sits in memory or whichever process hashes it, keeps it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modeldeploy.tracking.dataset import HASH_FRAME, DatasetError, describe_dataset, hash_frame


def frame(rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "n": rng.integers(0, 100, rows),
            "s": rng.choice(["red", "green", "blüe"], rows),
            "c": pd.Categorical(rng.choice(["a", "b"], rows)),
            "t": pd.date_range("2026-01-01", periods=rows, freq="min"),
            "i": pd.array(rng.integers(0, 5, rows), dtype="Int64"),
        }
    )


@pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")  # in MLflow's digest
def test_change_at_row_40000_changes_our_hash_but_not_mlflows_digest() -> None:
    """The motivating fact: MLflow's digest reads the first 10,000 rows only."""
    import mlflow

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=50_000), "y": rng.integers(0, 2, 50_000)})
    changed = df.copy()
    changed.loc[40_000, "x"] += 1.0

    assert mlflow.data.from_pandas(changed).digest == mlflow.data.from_pandas(df).digest
    assert hash_frame(changed) != hash_frame(df)


def test_same_data_same_hash_in_another_process_with_another_hash_seed() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_frame_hash import frame; from modeldeploy.tracking.dataset import hash_frame; "
        "print(hash_frame(frame()))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {hash_frame(frame())}


def _set(col: str, row: int, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[row, col] = value
        return df

    return change


CHANGES = {
    "float value": _set("x", 999, 0.5),
    "float to NaN": _set("x", 3, np.nan),
    "int value": _set("n", 500, 101),
    "string value": _set("s", 999, "green "),
    "string to missing": _set("s", 10, None),
    "category value": _set("c", 0, "b" if frame()["c"][0] == "a" else "a"),
    "timestamp value": _set("t", 999, pd.Timestamp("2030-01-01")),
    "nullable int to NA": _set("i", 7, pd.NA),
    "column renamed": lambda df: df.rename(columns={"x": "X"}),
    "columns reordered": lambda df: df[["n", "x", "s", "c", "t", "i"]],
    "int64 to int32": lambda df: df.astype({"n": "int32"}),
    "int to float": lambda df: df.astype({"n": "float64"}),
    "str to object": lambda df: df.astype({"s": object}),
    "category to str": lambda df: df.astype({"c": "str"}),
    "unused category added": lambda df: df.assign(c=df["c"].cat.add_categories(["unused"])),
    "last row dropped": lambda df: df.iloc[:-1],
    "rows reversed": lambda df: df.iloc[::-1].reset_index(drop=True),
    "row appended": lambda df: pd.concat([df, df.iloc[:1]], ignore_index=True),
    "timezone added": lambda df: df.assign(t=df["t"].dt.tz_localize("UTC")),
    "column dropped": lambda df: df.drop(columns=["i"]),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_any_change_changes_the_hash(change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    base = frame()
    assert hash_frame(change(base)) != hash_frame(base)


def test_string_boundaries_are_part_of_the_hash() -> None:
    assert hash_frame(pd.DataFrame({"s": ["ab", "c"]})) != hash_frame(
        pd.DataFrame({"s": ["a", "bc"]})
    )
    assert hash_frame(pd.DataFrame({"s": ["", "x"]})) != hash_frame(
        pd.DataFrame({"s": [None, "x"]})
    )


def test_memory_layout_copies_and_the_index_do_not_change_the_hash() -> None:
    values = np.random.default_rng(3).normal(size=(5000, 4))
    c_order = pd.DataFrame(np.ascontiguousarray(values), columns=list("abcd"))
    f_order = pd.DataFrame(np.asfortranarray(values), columns=list("abcd"))
    by_column = pd.DataFrame({k: values[:, i].copy() for i, k in enumerate("abcd")})
    strided = pd.DataFrame(np.repeat(values, 2, axis=0)[::2], columns=list("abcd"))
    reindexed = c_order.set_axis(np.arange(5000) * 3 + 11)
    hashes = {hash_frame(d) for d in (c_order, f_order, by_column, strided, reindexed)}
    assert hashes == {hash_frame(c_order.copy())}


def test_nan_is_one_value_whatever_its_bits() -> None:
    bits = np.array([0x7FF8000000000000, 0xFFF8000000000001, 0x7FF0000000000123], dtype="<u8")
    odd_nans = bits.view("<f8")
    assert np.isnan(odd_nans).all()
    canonical = pd.DataFrame({"x": [np.nan, np.nan, np.nan]})
    assert hash_frame(pd.DataFrame({"x": odd_nans})) == hash_frame(canonical)
    assert hash_frame(pd.DataFrame({"x": [None, 1.0]})) == hash_frame(
        pd.DataFrame({"x": [np.nan, 1.0]})
    )
    # -0.0 and 0.0 compare equal but are different values to a model's input: kept apart.
    assert hash_frame(pd.DataFrame({"x": [-0.0]})) != hash_frame(pd.DataFrame({"x": [0.0]}))


def test_string_storage_does_not_change_the_hash() -> None:
    values = ["a", None, "ü", "long" * 50]
    python = pd.Series(values, dtype=pd.StringDtype("python", na_value=np.nan))
    arrow = pd.Series(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    assert hash_frame(python.to_frame("s")) == hash_frame(arrow.to_frame("s"))


def test_big_endian_numbers_hash_as_their_values() -> None:
    little = pd.DataFrame({"x": np.arange(10, dtype="<i8"), "y": np.linspace(0, 1, 10)})
    big = pd.DataFrame({"x": np.arange(10, dtype=">i8"), "y": np.linspace(0, 1, 10).astype(">f8")})
    assert hash_frame(big) == hash_frame(little)


def test_mixed_object_columns_keep_each_values_type() -> None:
    a = pd.DataFrame({"m": pd.Series([1, "1", None, 2.5], dtype=object)})
    b = pd.DataFrame({"m": pd.Series(["1", 1, None, 2.5], dtype=object)})
    assert hash_frame(a) != hash_frame(b)
    assert hash_frame(a) == hash_frame(a.copy())


def test_values_without_a_stable_text_form_are_refused() -> None:
    with pytest.raises(DatasetError, match="no stable text form"):
        hash_frame(pd.DataFrame({"o": pd.Series([object()], dtype=object)}))
    with pytest.raises(DatasetError, match="sets have no stable order"):
        hash_frame(pd.DataFrame({"o": pd.Series([{"a", "b"}], dtype=object)}))


def test_numpy_arrays_and_series_hash_as_their_dataframe() -> None:
    arr = np.random.default_rng(5).normal(size=(100, 3))
    version = describe_dataset(arr, name="features")
    assert version.hash == hash_frame(pd.DataFrame(arr))
    assert (version.rows, version.columns, version.hash_algorithm) == (100, 3, HASH_FRAME)
    s = pd.Series([1, 2, 3], name="y")
    assert describe_dataset(s, name="y").hash == hash_frame(s.to_frame())
    with pytest.raises(DatasetError, match="1 or 2 dimensions"):
        describe_dataset(np.zeros((2, 2, 2)), name="cube")


def test_frame_record_counts_rows_columns_and_schema() -> None:
    v = describe_dataset(frame(10), name="train", targets="n")
    assert (v.rows, v.columns, v.targets) == (10, 6, "n")
    assert [(f.name, f.type) for f in v.schema][:3] == [
        ("x", "float64"),
        ("n", "int64"),
        ("s", "str"),
    ]


def _double(x: int) -> int:
    return 2 * x


@pytest.mark.parametrize("value", [_double, (i for i in ()), object()])
def test_values_whose_text_holds_a_memory_address_are_refused(value: object) -> None:
    """Their text (`<function f at 0x…>`) differs per process: hashing it would give the same
    data a new version on every run."""
    df = pd.DataFrame({"f": pd.Series([1, value], dtype=object)})
    with pytest.raises(DatasetError, match="no stable text form"):
        hash_frame(df)
