"""Reading and writing case-record tables (CSV or Parquet) in the contract's encodings.

CSV: booleans ``true``/``false``, lists joined by ``|`` (an empty cell is the empty list),
an empty cell is unknown. Parquet: native boolean and list columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import FIELD_BY_NAME, Kind

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet", ".pq")


class TableError(ValueError):
    """A file that cannot be read as a table of case records."""


def table_format(path: Path) -> str:
    """``csv`` or ``parquet`` by the file name, or a TableError naming what is accepted."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise TableError(f"{path}: not a CSV or Parquet file (expected one of {', '.join(SUFFIXES)})")


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a table as raw values (text for CSV) without interpreting them.

    Raises:
        TableError: the file is missing, not CSV/Parquet, empty, or unreadable.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise TableError(f"{path}: the file is empty")
    try:
        if fmt == "csv":
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig"
            )
            if "registry_flags" in frame.columns:  # an empty cell is the empty list
                frame["registry_flags"] = frame["registry_flags"].fillna("")
        else:
            frame = pd.read_parquet(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise TableError(f"{path}: cannot be read as {fmt.upper()}: {exc}") from exc
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        raise TableError(f"{path}: cannot be read as {fmt.upper()}: {exc}") from exc
    if frame.empty:
        raise TableError(f"{path}: the file has no rows")
    return frame


def iter_table_chunks(path: Path | str, rows: int) -> Iterator[pd.DataFrame]:
    """Read a table in chunks of ``rows`` raw rows (for scoring files larger than memory)."""
    path = Path(path)
    fmt = table_format(path)
    if fmt == "csv":
        reader = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            chunksize=rows,
            encoding="utf-8-sig",
        )
        for chunk in reader:
            if "registry_flags" in chunk.columns:
                chunk["registry_flags"] = chunk["registry_flags"].fillna("")
            yield chunk
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield batch.to_pandas()


def to_wire(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """Encode a canonical frame (see features.contract) for writing in ``fmt``."""
    out = frame.copy()
    for name in out.columns:
        spec = FIELD_BY_NAME.get(name)
        if spec is None:
            continue
        column = out[name]
        if spec.kind is Kind.BOOL:
            values = column.to_numpy(dtype="float64")
            out[name] = pd.arrays.BooleanArray(values == 1.0, np.isnan(values))
        elif spec.kind is Kind.INT:
            out[name] = column.astype("Int64")
        elif spec.kind is Kind.LIST and fmt == "parquet":
            out[name] = [None if v is None else ([] if v == "" else v.split("|")) for v in column]
    return out


def write_table(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write a canonical frame as CSV or Parquet (by extension) in the contract's encodings."""
    path = Path(path)
    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wire = to_wire(frame, fmt)
    if fmt == "csv":
        # pyarrow writes booleans as true/false and nulls as empty cells, ~10x faster than pandas
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        table = pa.Table.from_pandas(wire, preserve_index=False)
        pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="needed"))
    else:
        wire.to_parquet(path, index=False)
    log.info("wrote %d rows to %s", len(frame), path)
    return path
