"""The experiment's datasets as the stages read them: a stage folder ``data/<role>`` whose ``stage.json`` holds the
classes, the row counts and, for the user's own data, where its CSVs are (``csvs``); made by the recipes, or from the
user's NNC dataset CSVs (a folder with ``training.csv``, ``validation.csv``, ``test.csv``, or one path for each)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

from ..errors import NncToolsError
from ..formats.nnc_csv import class_count, label_names, read_header_and_count
from .stages import StageRecord, read_stage

SPLITS = ("training", "validation", "test")


def csv_of(data: Path, split: str) -> Path:
    """The CSV of a split: the user's (recorded in the stage) or the one the recipe wrote into the stage folder."""
    given = read_stage(data).csvs.get(split)
    return Path(given) if given else data / f"{split}.csv"


def class_count_of(data: Path) -> int:
    return len(read_stage(data).classes)


def user_csvs(value: Union[str, Dict[str, str]], resolve, where) -> Dict[str, Path]:
    """The three CSVs a ``source_data``/``target_data`` setting names: a folder holding NNC's three, or a mapping."""
    if isinstance(value, str):
        folder = resolve(value)
        csvs = {split: folder / f"{split}.csv" for split in SPLITS}
    else:
        csvs = {split: resolve(value[split]) for split in SPLITS}
    for split, path in csvs.items():
        if not path.is_file():
            raise NncToolsError(path, f"no {split} CSV here (named by {where})")
    return {split: path.resolve() for split, path in csvs.items()}


def user_data_settings(csvs: Dict[str, Path]) -> Dict:
    """What a stage of the user's data is made from: which files, how large, when changed (a re-run redoes the stages
    that used them if they change); no file is read."""
    return {"csvs": {split: str(path) for split, path in csvs.items()},
            "files": {split: [path.stat().st_size, path.stat().st_mtime_ns] for split, path in csvs.items()}}


def user_data_record(csvs: Dict[str, Path]) -> StageRecord:
    """What a stage of the user's data records: the classes (the training CSV's header names, else 0 … n-1), the rows
    of each split, where the CSVs are, and its settings (``user_data_settings``)."""
    count, _ = class_count(csvs["training"])
    names = label_names(read_header_and_count(csvs["training"])[0]) or [str(k) for k in range(count)]
    counts = {split: read_header_and_count(path)[1] for split, path in csvs.items()}
    settings = user_data_settings(csvs)
    return StageRecord(settings, counts=counts, classes=names, csvs=settings["csvs"], user_data=True)
