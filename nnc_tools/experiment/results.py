"""The experiment's numbers, read back from the files its stages wrote: each target run (its stage record, training log
and test evaluation), the rows of the report's tables and each arm's paired difference from scratch."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..training.records import TRAINING_LOG, EpochRecord, RunSummary, read_evaluation, read_training_log
from .stages import STAGE, read_stage

ARMS = (("scratch", "from scratch"), ("transfer", "transfer (frozen layers)"), ("fine-tune", "fine-tune (phases)"))
BASELINE = "scratch"


@dataclass
class Run:
    """One finished target run (or the source run): what its own files say."""

    kind: str
    seed: int
    folder: Path
    summary: RunSummary
    settings: Dict
    test_accuracy: float
    test_count: Optional[int]  # images in the test set it was evaluated on (its evaluation.json)
    result_dir: Path
    test_dir: Path
    history: List[EpochRecord]

    @property
    def lowest_loss(self) -> Tuple[int, Optional[float], Optional[float]]:
        """The epoch of lowest validation loss (``nnabla_cli``'s best, whose parameters are ``results.nnp``), the loss and
        the validation accuracy at that epoch."""
        return self.summary.best_epoch, self.summary.best_valid_error, self.summary.best_valid_accuracy

    @property
    def highest_accuracy(self) -> Tuple[Optional[int], Optional[float]]:
        """The epoch of highest validation accuracy and that accuracy (not the one ``results.nnp`` holds)."""
        scored = [r for r in self.history if r.valid_accuracy is not None]
        if not scored:
            return None, None
        best = max(scored, key=lambda r: (r.valid_accuracy, -r.epoch))
        return best.epoch, best.valid_accuracy

    @property
    def test_right(self) -> Optional[int]:
        return None if self.test_count is None else int(round(self.test_accuracy * self.test_count))


def read_run(folder: Path, kind: str) -> Run:
    """A run from its stage record (paths in it are relative to its folder, so a moved run folder still reads)."""
    record = read_stage(folder)
    result_dir, test_dir = folder / record.result_dir, folder / record.test_dir
    evaluation = read_evaluation(test_dir)
    history = read_training_log(result_dir) if (result_dir / TRAINING_LOG).is_file() else []
    seed = record.settings.get("seed", record.summary.seed)
    return Run(kind, seed, folder, record.summary, record.settings, record.test_accuracy,
               evaluation.count if evaluation else None, result_dir, test_dir, history)


def target_runs(run_dir: Path) -> Dict[str, List[Run]]:
    """Every arm's finished runs, by seed."""
    runs = {}
    for kind, _ in ARMS:
        found = [read_run(m.parent, kind) for m in run_dir.glob(f"{kind}-s*/{STAGE}")]
        if found:
            runs[kind] = sorted(found, key=lambda r: r.seed)
    return runs


def source_run(run_dir: Path) -> Optional[Run]:
    return read_run(run_dir / "source", "source") if (run_dir / "source" / STAGE).is_file() else None


def percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def spread(values: Sequence[Optional[float]], fmt) -> str:
    """One value as it is; two as both (a standard deviation of two says little); three or more as mean ± std."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) < 3:
        return ", ".join(fmt(v) for v in values)
    return f"{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values))}"


def arm_rows(runs: Dict[str, List[Run]]) -> List[Dict[str, str]]:
    """The comparison table: one row an arm."""
    rows = []
    for kind, label in ARMS:
        arm = runs.get(kind)
        if not arm:
            continue
        rows.append({
            "arm": label,
            "seeds": str(len(arm)),
            "test accuracy": spread([r.test_accuracy for r in arm], percent),
            "lowest validation loss (cross-entropy)": spread([r.lowest_loss[1] for r in arm], "{:.3f}".format),
            "at epoch": spread([float(r.lowest_loss[0]) for r in arm], "{:.0f}".format),
            "validation accuracy at that epoch": spread([r.lowest_loss[2] for r in arm], percent),
            "highest validation accuracy": spread([r.highest_accuracy[1] for r in arm], percent),
            "wall time": spread([r.summary.wall_seconds for r in arm], "{:.0f} s".format),
            "training img/s": spread([r.summary.images_per_second for r in arm], "{:.1f}".format),
            "frozen parameters": f"{arm[0].summary.frozen_parameter_values:,}",
        })
    return rows


def seed_rows(runs: Dict[str, List[Run]]) -> List[Dict[str, str]]:
    """One row a run: each seed's figures, nothing averaged."""
    rows = []
    for kind, label in ARMS:
        for r in runs.get(kind, []):
            epoch, loss, at = r.lowest_loss
            top_epoch, top = r.highest_accuracy
            rows.append({
                "arm": label, "seed": str(r.seed), "test accuracy": percent(r.test_accuracy),
                "test images right": "n/a" if r.test_right is None else f"{r.test_right} / {r.test_count}",
                "lowest validation loss": "n/a" if loss is None else f"{loss:.3f} (epoch {epoch})",
                "validation accuracy at that epoch": percent(at),
                "highest validation accuracy": "n/a" if top is None else f"{percent(top)} (epoch {top_epoch})",
                "wall time": f"{r.summary.wall_seconds:.0f} s",
            })
    return rows


@dataclass
class Difference:
    """An arm's test accuracy minus scratch's, seed by seed (same seed, same data order and initial head)."""

    kind: str
    per_seed: Dict[int, float]

    @property
    def mean(self) -> float:
        return statistics.mean(self.per_seed.values())

    @property
    def interval(self) -> Optional[Tuple[float, float]]:
        """The 95 % confidence interval of the mean paired difference (Student's t), from two seeds on."""
        n = len(self.per_seed)
        if n < 2:
            return None
        from scipy.stats import t

        half = t.ppf(0.975, n - 1) * statistics.stdev(self.per_seed.values()) / math.sqrt(n)
        return self.mean - half, self.mean + half


def differences(runs: Dict[str, List[Run]]) -> List[Difference]:
    baseline = {r.seed: r.test_accuracy for r in runs.get(BASELINE, [])}
    found = []
    for kind, _ in ARMS:
        if kind == BASELINE or kind not in runs:
            continue
        paired = {r.seed: r.test_accuracy - baseline[r.seed] for r in runs[kind] if r.seed in baseline}
        if paired:
            found.append(Difference(kind, paired))
    return found


def points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def difference_rows(runs: Dict[str, List[Run]]) -> List[Dict[str, str]]:
    labels = dict(ARMS)
    rows = []
    for d in differences(runs):
        interval = d.interval
        if interval is None:
            verdict = "one seed: no interval (run with --seeds 3 or more to tell a gain from noise)"
        else:
            zero = "excludes" if interval[0] > 0 or interval[1] < 0 else "includes"
            verdict = f"{points(interval[0])} to {points(interval[1])} ({zero} 0)"
        rows.append({
            "arm against from scratch": labels[d.kind], "seeds paired": str(len(d.per_seed)),
            "test accuracy difference (mean)": points(d.mean), "95 % interval": verdict,
            "per seed": ", ".join(f"s{s}: {points(v)}" for s, v in sorted(d.per_seed.items())),
        })
    return rows


SPREAD_NOTE = ("a ± b is the mean ± the standard deviation over the seeds (from 3 seeds on; with fewer, the values "
               "themselves)")


def verdicts(runs: Dict[str, List[Run]]) -> List[str]:
    """What the data shows, in words: each arm against scratch, by the 95 % interval of the paired difference."""
    labels, lines = dict(ARMS), []
    for d in differences(runs):
        interval = d.interval
        if interval is None:
            lines.append(f"{labels[d.kind]}: {points(d.mean)} against from scratch with one seed, which cannot tell a "
                         "gain from noise (run with --seeds 3 or more)")
        elif interval[0] > 0 or interval[1] < 0:
            better = "better" if interval[0] > 0 else "worse"
            lines.append(f"{labels[d.kind]} is {better} than from scratch beyond noise: {points(d.mean)} on average, "
                         f"95 % interval {points(interval[0])} to {points(interval[1])} over {len(d.per_seed)} seeds")
        else:
            lines.append(f"{labels[d.kind]} does not differ from scratch beyond noise: {points(d.mean)} on average, but the "
                         f"95 % interval {points(interval[0])} to {points(interval[1])} includes 0 ({len(d.per_seed)} seeds)")
    return lines


def title(runs: Dict[str, List[Run]]) -> str:
    """The report's title: every arm it compares."""
    shown = [label for kind, label in ARMS if kind in runs] or [label for _, label in ARMS[:2]]
    return "Transfer learning: " + " vs ".join(shown)
