"""Reading tabular data (CSV or Parquet) in bounded chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

CHUNK_ROWS = 50_000


class DataError(ValueError):
    """A data file cannot be read or lacks what is needed; the message says which."""


def iter_frames(path: str | Path, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most ``chunk_rows`` rows (default :data:`CHUNK_ROWS`, read at
    call time); memory stays bounded."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            for batch in pq.ParquetFile(p).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        elif suffix in (".csv", ".txt", ".gz"):
            yield from pd.read_csv(p, chunksize=chunk_rows)
        else:
            raise DataError(f"{p}: unsupported format {suffix or '(none)'}; use .csv or .parquet")
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"{p}: cannot read ({type(exc).__name__}: {exc})") from None


class Reservoir:
    """A uniform sample of at most ``size`` rows of a stream of DataFrames.

    Each row gets a random key; the rows with the smallest keys are kept (vectorised
    reservoir sampling), so the sample is uniform whatever the chunking.
    """

    def __init__(self, size: int, seed: int = 0):
        if size < 1:
            raise ValueError(f"size must be >= 1; got {size}")
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._frame = None
        self._keys = np.zeros(0)
        self.seen = 0

    def add(self, frame: pd.DataFrame) -> None:
        keys = self._rng.random(len(frame))
        self.seen += len(frame)
        frame = frame.reset_index(drop=True)
        if self._frame is None:
            allf, allk = frame, keys
        else:
            allf, allk = pd.concat([self._frame, frame], ignore_index=True), np.concatenate([self._keys, keys])
        if len(allk) > self.size:
            keep = np.sort(np.argpartition(allk, self.size - 1)[: self.size])
            allf, allk = allf.iloc[keep].reset_index(drop=True), allk[keep]
        self._frame, self._keys = allf, allk

    @property
    def frame(self) -> pd.DataFrame | None:
        return self._frame
