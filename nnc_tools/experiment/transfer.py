"""`nnc-tl experiment transfer`: the reference experiment in one command.

Stages, each one call of the library the other commands use, each in its own folder under RUN_DIR and skipped when a
re-run finds it finished (an interrupted training stage resumes from its checkpoint):

1. ``data/source``, ``data/target`` — the dataset recipes (``nnc-tl dataset``);
2. ``source`` — export the network for the source classes and train it (``nnc-tl export`` + ``train``), or take
   ``--source-weights``;
3. ``scratch-s<seed>`` — export for the target classes and train from scratch;
4. ``transfer-s<seed>`` — export with the source weights ("Open with Weight"), apply the freeze overlay, train;
5. ``report.md`` and a self-contained ``report.html`` from the runs' own ``summary.json`` and evaluations.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

from ..data.recipes import load_recipe, make_dataset, resolve_source
from ..errors import NncToolsError
from ..fileio import PathLike, atomic_output
from ..project.export import export_network
from ..project.freeze import apply_freeze
from ..training.checkpoint import CHECKPOINT
from ..training.evaluate import evaluate
from ..training.train import TrainOptions, train
from .config import ExperimentConfig
from .report import write_report

log = logging.getLogger(__name__)

def _finished_stage(folder: Path) -> Optional[Dict]:
    marker = folder / "stage.json"
    return json.loads(marker.read_text()) if marker.is_file() else None


def _record_stage(folder: Path, record: Dict) -> Dict:
    with atomic_output(folder / "stage.json") as temp:
        temp.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _train_stage(folder: Path, project: Path, epochs: int, batch_size: int, seed: int, test_csv: Path) -> Dict:
    """Train (resuming an interrupted run) and evaluate on the test set; the stage's record comes from its own files."""
    result_dir = folder / "result"
    options = TrainOptions(epochs=epochs, batch_size=batch_size, seed=seed, resume=(result_dir / CHECKPOINT).exists(),
                           progress=True)
    train(project, result_dir, options)
    test = evaluate(result_dir / "results.nnp", test_csv, folder / "test", batch_size=batch_size, cache=folder / "cache")
    summary = json.loads((result_dir / "summary.json").read_text())
    return _record_stage(folder, {"summary": summary, "test_accuracy": test["accuracy"], "result_dir": str(result_dir),
                            "test_dir": str(folder / "test")})


def run_transfer(run_dir: PathLike, config: ExperimentConfig, *, synthetic: bool = False, cifar10: Optional[str] = None,
                 cifar100: Optional[str] = None, source_weights: Optional[PathLike] = None, verify: bool = True) -> Path:
    """Run every stage that is not finished yet, then write the report; returns the path of ``report.html``."""
    run_dir = Path(run_dir)
    archives = {"cifar10": cifar10, "cifar100": cifar100}
    overlay = config.path(config.overlay)
    if not overlay.is_file():
        raise NncToolsError(overlay, "freeze overlay not found")
    for role, recipe in (("source", config.source_recipe), ("target", config.target_recipe)):
        if not synthetic and not (role == "source" and source_weights is not None) and not _finished_stage(run_dir / "data" / role):
            loaded = load_recipe(recipe if not recipe.endswith((".yaml", ".yml")) else str(config.path(recipe)))
            resolve_source(loaded, archives.get(loaded.source), False, verify)  # fails before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(run_dir / "config.json") as temp:
        temp.write_text(json.dumps({**asdict(config), "base": str(config.base), "synthetic": synthetic}, indent=2) + "\n")

    data = {}
    for role, recipe in (("source", config.source_recipe), ("target", config.target_recipe)):
        if role == "source" and source_weights is not None:
            continue
        folder = run_dir / "data" / role
        if not _finished_stage(folder):
            log.info(f"[experiment] dataset {recipe} -> {folder}")
            kind = "cifar10" if recipe.startswith("cifar10") else "cifar100"
            recipe_ref = recipe if not recipe.endswith((".yaml", ".yml")) else str(config.path(recipe))
            result = make_dataset(recipe_ref, folder, source=archives.get(kind), synthetic=synthetic, verify=verify,
                                  synthetic_per_class=(config.synthetic_per_class or {}).get(role))
            _record_stage(folder, {"counts": result.counts, "classes": result.classes})
        data[role] = folder

    common = dict(batch_size=config.batch_size, solver=config.solver, lr=config.lr)
    if source_weights is None:
        folder = run_dir / "source"
        if not _finished_stage(folder):
            log.info(f"[experiment] source: {config.network} on {config.source_recipe}, {config.source_epochs} epochs")
            folder.mkdir(parents=True, exist_ok=True)
            classes = len(json.loads((data["source"] / "stage.json").read_text())["classes"])
            export_network(config.network, folder / "project.nnp", train_csv=data["source"] / "training.csv",
                           val_csv=data["source"] / "validation.csv", classes=classes, epochs=config.source_epochs, **common)
            _train_stage(folder, folder / "project.nnp", config.source_epochs, config.batch_size, 0, data["source"] / "test.csv")
        source_weights = folder / "result" / "results.nnp"

    target_classes = len(json.loads((data["target"] / "stage.json").read_text())["classes"])
    for seed in range(config.seeds):
        for kind in ("scratch", "transfer"):
            folder = run_dir / f"{kind}-s{seed}"
            if _finished_stage(folder):
                continue
            log.info(f"[experiment] {kind} (seed {seed}): {config.network} on {config.target_recipe}, {config.target_epochs} epochs")
            folder.mkdir(parents=True, exist_ok=True)
            project = folder / "project.nnp"
            if not project.exists():
                export_network(config.network, project, train_csv=data["target"] / "training.csv",
                               val_csv=data["target"] / "validation.csv", classes=target_classes, epochs=config.target_epochs,
                               seed=seed, weights=source_weights if kind == "transfer" else None, **common)
                if kind == "transfer":
                    apply_freeze(project, overlay)
            _train_stage(folder, project, config.target_epochs, config.batch_size, seed, data["target"] / "test.csv")
    return write_report(run_dir, config)
