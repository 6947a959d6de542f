"""Dataset CSVs decoded once into arrays for training and evaluation (NNabla's CSV data iterator does the decoding)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np

from .errors import NncToolsError
from .nnc_csv import label_names, read_header_and_count


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
    """Decode a dataset CSV with NNabla's CSV data iterator (its cache in ``cache``)."""
    from nnabla.utils.data_iterator import data_iterator_csv_dataset

    uri = Path(uri)
    header, rows = read_header_and_count(uri)
    if rows == 0:
        raise NncToolsError(uri, "dataset CSV has no rows")
    batch = min(rows, 256)
    cache.mkdir(parents=True, exist_ok=True)
    chunks: Dict[str, List[np.ndarray]] = {}
    try:
        with data_iterator_csv_dataset(str(uri), batch, shuffle=False, normalize=False, with_memory_cache=False,
                                       with_file_cache=True, cache_dir=str(cache)) as it:
            names = it.variables
            for _ in range(math.ceil(rows / batch)):
                for name, value in zip(names, it.next()):
                    chunks.setdefault(name, []).append(np.asarray(value))
    except (OSError, ValueError, KeyError) as e:
        raise NncToolsError(uri, f"cannot read dataset: {e}") from None
    arrays = {name: np.concatenate(parts)[:rows] for name, parts in chunks.items()}
    for name, value in arrays.items():
        if value.dtype != np.uint8 and np.issubdtype(value.dtype, np.floating) and np.all(value == np.round(value)) \
                and value.max(initial=0) <= 255 and value.min(initial=0) >= 0 and value.ndim >= 3:
            arrays[name] = value.astype(np.uint8)
    return Dataset(name or uri.stem, uri, arrays, normalize, shuffle, label_names(header))
