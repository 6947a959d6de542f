"""The files a training run writes about itself, each with one writer and, where something reads it back, one reader:
``monitoring_report.yml`` (``nnabla_cli``'s keys), ``training_log.csv``, ``summary.json`` (``RunSummary``) and an
evaluation's ``evaluation.json`` (``Evaluation``)."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ..fileio import atomic_output

MONITORING_REPORT = "monitoring_report.yml"
TRAINING_LOG = "training_log.csv"
SUMMARY = "summary.json"
EVALUATION = "evaluation.json"
PROGRESS = "progress.txt"  # nnabla_cli's (and NNC's console's) one-line state of a running training


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


@dataclass
class RunSummary:
    """What a finished run says about itself (``summary.json``)."""

    project: str = ""
    epochs: int = 0
    best_epoch: int = 0  # of lowest validation loss: the parameters ``results.nnp`` holds
    best_valid_error: Optional[float] = None
    best_valid_accuracy: Optional[float] = None
    accuracy: Optional[float] = None  # of results.nnp on the validation set
    final_cost: Optional[float] = None
    wall_seconds: float = 0.0
    training_seconds: float = 0.0
    images_per_second: float = 0.0
    batch_size: int = 0
    seed: int = 0
    frozen_parameters: List[str] = field(default_factory=list)  # trained parameters at multiplier 0 (no BN statistics)
    frozen_parameter_values: int = 0
    frozen_bn: str = "inference"
    reinitialised: List[List[str]] = field(default_factory=list)  # [name, why] of parameters --weights did not give
    context: str = "cpu"
    workers: int = 1
    onnx: Optional[str] = None  # results.onnx, when written

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunSummary":
        """A summary from its JSON form; keys it does not know are ignored, missing ones take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def summarise(history: List[EpochRecord], best_epoch: int, evaluation: Optional["Evaluation"], wall: float,
              **run: Any) -> RunSummary:
    """A finished run's summary: what its epochs (``history``), its best epoch and its evaluation say, and ``run``, the
    fields only the run knows (project, batch size, seed, frozen parameters …)."""
    best = next((r for r in history if r.epoch == best_epoch), history[-1] if history else None)
    seconds = sum(r.seconds for r in history)
    images = sum(r.images_per_second * r.seconds for r in history)
    return RunSummary(epochs=len(history), best_epoch=best_epoch,
                      best_valid_error=best.valid_error if best else None,
                      best_valid_accuracy=best.valid_accuracy if best else None,
                      accuracy=evaluation.accuracy if evaluation else None,
                      final_cost=history[-1].cost if history else None, wall_seconds=round(wall, 3),
                      training_seconds=round(seconds, 3), images_per_second=round(images / max(seconds, 1e-9), 2), **run)


def write_summary(result_dir: Path, summary: RunSummary) -> None:
    with atomic_output(result_dir / SUMMARY) as temp:
        temp.write_text(json.dumps(asdict(summary), indent=2) + "\n")


def read_summary(result_dir: Path) -> RunSummary:
    return RunSummary.from_dict(json.loads((result_dir / SUMMARY).read_text()))


@dataclass
class Evaluation:
    """A project evaluated on a dataset CSV (``evaluation.json``)."""

    accuracy: float
    count: Optional[int] = None  # rows evaluated
    project: str = ""
    dataset: str = ""
    classes: List[str] = field(default_factory=list)
    per_class: List[Dict[str, Any]] = field(default_factory=list)  # class, precision, recall, support
    confusion_matrix: List[List[int]] = field(default_factory=list)  # rows true, columns predicted


def write_evaluation(folder: Path, evaluation: Evaluation) -> None:
    with atomic_output(folder / EVALUATION) as temp:
        temp.write_text(json.dumps(asdict(evaluation), indent=2) + "\n")


def read_evaluation(folder: Path) -> Optional[Evaluation]:
    """The evaluation written into ``folder``, or None when there is none."""
    path = folder / EVALUATION
    if not path.is_file():
        return None
    values = json.loads(path.read_text())
    known = {f.name for f in fields(Evaluation)}
    return Evaluation(**{k: v for k, v in values.items() if k in known})


def history_as_dicts(history: List[EpochRecord]) -> List[Dict]:
    return [asdict(r) for r in history]


def rest_line(epochs_left: int, seconds_each: float) -> str:
    """What the remaining epochs will take at the first epoch's pace (the frozen-prefix cache's filling left out)."""
    rest = epochs_left * max(seconds_each, 0.0)
    return f"at this pace the other {epochs_left} epochs take about " + (f"{rest / 60:.0f} min" if rest >= 90 else
                                                                         f"{rest:.0f} s")


def epoch_line(record: EpochRecord, epochs: int) -> str:
    """The line a trained epoch logs."""
    line = f"epoch {record.epoch}/{epochs} cost={record.cost:.6f}"
    line += "".join(f" {k}={v:.6f}" for k, v in (("train_error", record.train_error), ("valid_error", record.valid_error),
                                                  ("valid_accuracy", record.valid_accuracy)) if v is not None)
    return f"{line} time={record.seconds:.1f}s ({record.images_per_second:.1f} img/s)"


class ProgressReport:
    """Where a running epoch stands, for those who cannot see a progress bar: ``progress.txt`` as nnabla_cli writes it
    (one line, ``Training : cost=… (NN.NN%)``, rewritten at most once a second, empty when the run ends) and, on a
    console that is no terminal, a log line every ``every`` seconds with the images a second and the epoch's ETA."""

    def __init__(self, result_dir: Path, log_line, every: float = 30.0):
        self.path, self.log_line, self.every = result_dir / PROGRESS, log_line, every
        self.written, self.logged = 0.0, time.monotonic()  # the first line after ``every`` seconds, not at once

    def update(self, epoch: int, epochs: int, done: int, total: int, cost: float, images: int, started: float) -> None:
        now = time.monotonic()
        if now - self.written >= 1.0 or done == total:
            self.written = now
            with atomic_output(self.path) as temp:
                temp.write_text(f"Training : cost={cost:0.6f} ({100 * done / total:3.2f}%)")
        if self.log_line is not None and now - self.logged >= self.every and done < total:
            self.logged = now
            rate = images / max(now - started, 1e-9)
            eta = (total - done) * (images / done) / max(rate, 1e-9)
            self.log_line(f"epoch {epoch}/{epochs}: {done}/{total} iterations, {rate:.1f} img/s, the epoch ends in about "
                          f"{eta:.0f} s")

    def finish(self) -> None:
        with atomic_output(self.path) as temp:
            temp.write_text("")
