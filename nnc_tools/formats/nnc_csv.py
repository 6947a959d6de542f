"""NNC / NNabla dataset CSVs: header ``x:image,y:label;name0;name1…``, one row per example, paths relative to the CSV."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Tuple

from ..errors import NncToolsError
from ..fileio import PathLike


def read_header_and_count(path: PathLike) -> Tuple[List[str], int]:
    """The header cells and the number of data rows of a dataset CSV (read as NNabla does, ``utf-8-sig``)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise NncToolsError(path, "empty dataset CSV (no header)")
            return header, sum(1 for row in reader if row)
    except FileNotFoundError:
        raise NncToolsError(path, "no such dataset CSV") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise NncToolsError(path, f"cannot read dataset CSV: {e}") from None


def label_names(header: List[str], column: str = "y") -> List[str]:
    """Class names NNC writes into the label column's header (``y:label;beaver;dolphin``), if any."""
    for cell in header:
        name, _, rest = cell.partition(":")
        if name.split("__")[0] == column and ";" in rest:
            return rest.split(";")[1:]
    return []


def dataset_path(uri: str, base: Path) -> Path:
    """A dataset URI as a path: relative ones against the project's folder; NNC's Windows separators accepted."""
    if "{SDCPATH}" in uri:
        raise NncToolsError(uri, "points into NNC's installation folder ({SDCPATH}); point the project at a local CSV")
    path = Path(uri.replace("\\", "/")) if os.sep == "/" else Path(uri)
    return path if path.is_absolute() else base / path
