"""NNC / NNabla dataset CSVs: header ``x:image,y:label;name0;name1…``, one row per example, paths relative to the CSV."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..errors import NncToolsError
from ..fileio import PathLike

MAX_CLASSES = 1 << 20  # the most classes a label may ask for (as --classes allows)


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


def class_count(path: PathLike, column: str = "y") -> Tuple[int, str]:
    """How many classes a dataset CSV has, and where that comes from: the names in its label column's header
    (``y:label;beaver;dolphin``), else the largest label + 1."""
    path = Path(path)
    header, _ = read_header_and_count(path)
    names = label_names(header, column)
    if names:
        return len(names), "the names in its header"
    where = next((i for i, cell in enumerate(header) if cell.partition(":")[0].split("__")[0] == column), None)
    if where is None:
        raise NncToolsError(path, f"has no label column {column} (its header: {','.join(header)[:120]})")
    top = -1
    with open(path, newline="", encoding="utf-8-sig") as f:
        for number, row in enumerate(csv.reader(f)):
            if number == 0 or not row:
                continue
            try:
                value = float(row[where])
            except (IndexError, ValueError):
                raise NncToolsError(path, f"row {number}: label {row[where] if where < len(row) else ''!r} is not a number") from None
            if not (math.isfinite(value) and value >= 0 and value == int(value)):
                raise NncToolsError(path, f"row {number}: label {row[where]!r} is not a class index")
            if value >= MAX_CLASSES:
                raise NncToolsError(path, f"row {number}: label {row[where]} is past the {MAX_CLASSES:,} classes a classifier "
                                    "may have: not a class index")
            top = max(top, int(value))
    if top < 0:
        raise NncToolsError(path, "has no rows to count the classes from")
    return top + 1, "its largest label + 1"


def classifier_classes(path: PathLike) -> Tuple[int, str]:
    """``class_count`` for a classifier's training CSV: at least two classes, else one line."""
    counted, where = class_count(path)
    if counted < 2:
        raise NncToolsError(path, f"has {counted} class ({where}); a classifier needs at least 2")
    return counted, where


def class_count_for(given: Optional[int], train_csv: PathLike) -> Tuple[int, str]:
    """The class count a classifier is made for: ``--classes``, else the training CSV's (``classifier_classes``), and
    where it came from. A ``--classes`` the CSV's header contradicts is refused: training would refuse it later."""
    counted, where = classifier_classes(train_csv)
    if given is None:
        return counted, f"from {train_csv}: {where}"
    if where == "the names in its header" and counted != given:
        raise NncToolsError(train_csv, f"its header names {counted} classes, --classes says {given}")
    return given, "--classes"


def check_split_csvs(train_csv: PathLike, val_csv: PathLike, columns: Sequence[str] = ()) -> None:
    """The training and validation CSVs a project is pointed at, from their headers alone (a million rows take a
    second): each has rows and the columns the network reads, and both name the same classes where both name them."""
    names = []
    for csv_path in (train_csv, val_csv):
        header, rows = read_header_and_count(csv_path)
        if rows == 0:
            raise NncToolsError(csv_path, "dataset CSV has no rows")
        present = {cell.partition(":")[0].split("__")[0] for cell in header}
        missing = [c for c in columns if c not in present]
        if missing:
            raise NncToolsError(csv_path, f"has no column {missing[0]}, which the network reads (its header: "
                                f"{','.join(header)[:120]})")
        names.append(label_names(header))
    if names[0] and names[1] and names[0] != names[1]:
        shown = [", ".join(n[:4]) + (", ..." if len(n) > 4 else "") for n in names]
        raise NncToolsError(val_csv, f"its header names the classes {shown[1]}; {Path(train_csv).name} names {shown[0]}: "
                            "splits of two different datasets?")


def dataset_path(uri: str, base: Path) -> Path:
    """A dataset URI as a path: relative ones against the project's folder; NNC's Windows separators accepted."""
    if "{SDCPATH}" in uri:
        raise NncToolsError(uri, "points into NNC's installation folder ({SDCPATH}); point the project at a local CSV")
    path = Path(uri.replace("\\", "/")) if os.sep == "/" else Path(uri)
    return path if path.is_absolute() else base / path


# NNabla's CSV loader: an image's channels by its PIL mode (it asserts they equal the network input's)
CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "P": 3, "RGB": 3, "YCbCr": 3, "RGBA": 4, "CMYK": 4}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def first_image(path: PathLike) -> Optional[Tuple[Path, List[int]]]:
    """The CSV's first image (column x) and its (channels, height, width), or None where its first row is not an image
    (``.npy``, ``.csv``) or the CSV has no x column or no rows; one line naming an image that cannot be read."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    header, rows = read_header_and_count(path)
    column = next((k for k, cell in enumerate(header) if cell.partition(":")[0].split("__")[0] == "x"), None)
    if column is None or rows == 0:
        return None
    with open(path, newline="", encoding="utf-8-sig") as f:
        row = next(r for i, r in enumerate(csv.reader(f)) if i > 0 and r)
    image = (path.parent / row[column].replace("\\", "/")) if column < len(row) else None
    if image is None or image.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    try:
        with Image.open(image) as img:
            return image, [CHANNELS.get(img.mode, len(img.getbands())), img.height, img.width]
    except (OSError, UnidentifiedImageError) as e:
        raise NncToolsError(image, f"the CSV's first image cannot be read ({e})") from None


def check_first_image(path: PathLike, wanted, where: Path) -> None:
    """The CSV's first image (column x) is ``wanted`` (channels, height, width), as NNabla's CSV loader needs it (it
    asserts the channels and feeds the size as it is); one line naming the image and both shapes otherwise. Rows that
    are not images (``.npy``, ``.csv``) are not checked."""
    found = first_image(path)
    if found is not None and found[1] != list(wanted):
        image, got = found
        raise NncToolsError(image, f"is {'x'.join(map(str, got))} (channels x height x width); {where.name}'s input is "
                            f"{'x'.join(map(str, wanted))}")
