"""A stage's record, ``stage.json`` in its folder: what it was made with (``settings``; a re-run compares them) and
what it made — a dataset stage its classes and sizes (or where the user's CSVs are), a training stage its run's
summary, its test accuracy and where its result and test folders are (relative to the stage, so a moved run folder
still reads). One dataclass, one reader, one writer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..fileio import atomic_output
from ..training.records import RunSummary

STAGE = "stage.json"


@dataclass
class StageRecord:
    settings: Dict[str, Any] = field(default_factory=dict)
    # a dataset stage
    counts: Dict[str, int] = field(default_factory=dict)  # rows per split
    per_class: Dict[str, Dict[str, int]] = field(default_factory=dict)  # split -> class -> rows
    classes: List[str] = field(default_factory=list)
    csvs: Dict[str, str] = field(default_factory=dict)  # the user's own CSVs, by split
    user_data: bool = False
    # a training stage
    summary: Optional[RunSummary] = None
    test_accuracy: Optional[float] = None
    result_dir: Optional[str] = None
    test_dir: Optional[str] = None


def stage_file(folder: Path) -> Path:
    return folder / STAGE


def read_stage(folder: Path) -> Optional[StageRecord]:
    """The record of the stage in ``folder``, or None when it has not finished."""
    path = stage_file(folder)
    if not path.is_file():
        return None
    values = json.loads(path.read_text())
    known = {f.name for f in fields(StageRecord)}
    record = StageRecord(**{k: v for k, v in values.items() if k in known})
    if isinstance(record.summary, dict):
        record.summary = RunSummary.from_dict(record.summary)
    return record


def write_stage(folder: Path, record: StageRecord) -> StageRecord:
    """``stage.json``, written last: its presence says the stage finished. Fields a stage of its kind leaves empty are
    left out of the file."""
    values = {k: v for k, v in asdict(record).items() if k == "settings" or not _empty(v)}
    with atomic_output(stage_file(folder)) as temp:
        temp.write_text(json.dumps(values, indent=2) + "\n")
    return record


def _empty(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (dict, list)) and not value)


def finished_stages(run_dir: Path) -> List[Path]:
    """Every finished stage's folder under a run folder, in path order."""
    return sorted(path.parent for path in run_dir.glob(f"**/{STAGE}"))
