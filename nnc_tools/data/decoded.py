"""Dataset CSVs decoded once into arrays for training and evaluation (NNabla's CSV data iterator does the decoding)."""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..errors import NncToolsError
from ..fileio import atomic_output
from ..formats.nnc_csv import label_names, read_header_and_count
from .cache import cache_dir


@dataclass
class Dataset:
    """A dataset CSV decoded once into arrays (images stay uint8; NNC's normalisation is applied per batch)."""

    name: str
    uri: Path
    arrays: Dict[str, np.ndarray]
    normalize: bool
    shuffle: bool
    classes: List[str]

    @property
    def size(self) -> int:
        return len(next(iter(self.arrays.values())))

    def batch(self, indices: np.ndarray, skip=()) -> Dict[str, np.ndarray]:
        """The rows at ``indices``, images scaled to [0, 1] when the dataset says so; ``skip`` leaves columns out."""
        out = {}
        for key, values in self.arrays.items():
            if key in skip:
                continue
            chunk = values[indices]
            out[key] = chunk.astype(np.float32) / 255.0 if (self.normalize and chunk.dtype == np.uint8) else chunk
        return out


def load_dataset(uri: Path, cache: Path, *, name: str = "", normalize: bool = True, shuffle: bool = False) -> Dataset:
    """Decode a dataset CSV with NNabla's CSV data iterator (its cache in ``cache``), once: the decoded arrays are kept in
    ``$NNC_TL_CACHE/decoded`` under a digest of the CSV and of the size and time of every file it names, and reused by
    later runs on the same files."""
    uri = Path(uri)
    header, rows = read_header_and_count(uri)
    if rows == 0:
        raise NncToolsError(uri, "dataset CSV has no rows")
    kept = cache_dir() / "decoded" / f"{_files_digest(uri)}.npz"
    arrays = None
    if kept.is_file():
        try:
            with np.load(kept) as stored:
                arrays = {key: stored[key] for key in stored.files}
        except (OSError, ValueError):
            arrays = None
    if arrays is None:
        arrays = _decode(uri, rows, cache)
        kept.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(kept) as temp, open(temp, "wb") as f:
            np.savez(f, **arrays)
    return Dataset(name or uri.stem, uri, arrays, normalize, shuffle, label_names(header))


def _files_digest(uri: Path) -> str:
    """What identifies a decoded dataset: the CSV's bytes and the size and modification time of every file it names."""
    h = hashlib.sha256(uri.read_bytes())
    folder = uri.parent
    with open(uri, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            for cell in row:
                try:
                    float(cell)
                    continue
                except ValueError:
                    pass
                try:
                    st = (folder / cell).stat()
                    h.update(f"{cell}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                except OSError:
                    h.update(f"{cell}\0missing\n".encode())
    return h.hexdigest()


def _decode(uri: Path, rows: int, cache: Path) -> Dict[str, np.ndarray]:
    from nnabla.utils.data_iterator import data_iterator_csv_dataset

    batch = min(rows, 256)
    cache.mkdir(parents=True, exist_ok=True)
    chunks: Dict[str, List[np.ndarray]] = {}
    try:
        with data_iterator_csv_dataset(str(uri), batch, shuffle=False, normalize=False, with_memory_cache=False,
                                       with_file_cache=True, cache_dir=str(cache)) as it:
            variables = it.variables
            for _ in range(math.ceil(rows / batch)):
                for variable, value in zip(variables, it.next()):
                    chunks.setdefault(variable, []).append(np.asarray(value))
    except (OSError, ValueError, KeyError) as e:
        raise NncToolsError(uri, f"cannot read dataset: {e}") from None
    arrays = {variable: np.concatenate(parts)[:rows] for variable, parts in chunks.items()}
    for variable, value in arrays.items():
        if value.dtype != np.uint8 and np.issubdtype(value.dtype, np.floating) and np.all(value == np.round(value)) \
                and value.max(initial=0) <= 255 and value.min(initial=0) >= 0 and value.ndim >= 3:
            arrays[variable] = value.astype(np.uint8)  # images come back as float without normalisation; keep uint8
    return arrays
