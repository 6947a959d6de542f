"""The files a training run writes about itself, each with one writer and, where something reads it back, one reader:
``monitoring_report.yml`` (``nnabla_cli``'s keys), ``training_log.csv`` and ``summary.json``."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from ..fileio import atomic_output

MONITORING_REPORT = "monitoring_report.yml"
TRAINING_LOG = "training_log.csv"
SUMMARY = "summary.json"


@dataclass
class EpochRecord:
    epoch: int
    cost: float
    train_error: Optional[float]
    valid_error: Optional[float]
    valid_accuracy: Optional[float]
    seconds: float
    images_per_second: float
    phase: Optional[int] = None  # with --phases: which phase the epoch trained in (1-based)


COLUMNS = ["epoch", "cost", "train_error", "valid_error", "valid_accuracy", "seconds", "images_per_second", "phase"]


def write_reports(result_dir: Path, history: List[EpochRecord]) -> None:
    """``monitoring_report.yml`` (epoch-1 keyed, as ``nnabla_cli`` writes it) and ``training_log.csv``."""
    report = {}
    for r in history:
        entry = {"cost": r.cost}
        if r.train_error is not None:
            entry["train_error"] = r.train_error
        if r.valid_error is not None:
            entry["valid_error"] = r.valid_error
        report[r.epoch - 1] = entry
    with atomic_output(result_dir / MONITORING_REPORT) as temp:
        temp.write_text(yaml.safe_dump(report, sort_keys=False))
    with atomic_output(result_dir / TRAINING_LOG) as temp, open(temp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in history:
            writer.writerow([r.epoch, r.cost, r.train_error, r.valid_error, r.valid_accuracy, round(r.seconds, 3),
                             round(r.images_per_second, 2), "" if r.phase is None else r.phase])


def read_training_log(result_dir: Path) -> List[EpochRecord]:
    """The epochs ``write_reports`` logged, back as records."""

    def value(row: Dict[str, str], key: str) -> Optional[float]:
        return float(row[key]) if row.get(key) not in (None, "", "None") else None

    with open(result_dir / TRAINING_LOG, newline="") as f:
        return [EpochRecord(int(row["epoch"]), float(row["cost"]), value(row, "train_error"), value(row, "valid_error"),
                            value(row, "valid_accuracy"), float(row["seconds"]), float(row["images_per_second"]),
                            None if value(row, "phase") is None else int(value(row, "phase")))
                for row in csv.DictReader(f)]


def write_summary(result_dir: Path, summary: Dict) -> None:
    with atomic_output(result_dir / SUMMARY) as temp:
        temp.write_text(json.dumps(summary, indent=2) + "\n")


def history_as_dicts(history: List[EpochRecord]) -> List[Dict]:
    return [asdict(r) for r in history]


def epoch_line(record: EpochRecord, epochs: int) -> str:
    """The line a trained epoch logs."""
    line = f"epoch {record.epoch}/{epochs} cost={record.cost:.6f}"
    line += "".join(f" {k}={v:.6f}" for k, v in (("train_error", record.train_error), ("valid_error", record.valid_error),
                                                  ("valid_accuracy", record.valid_accuracy)) if v is not None)
    return f"{line} time={record.seconds:.1f}s ({record.images_per_second:.1f} img/s)"
