"""`nnc-tl experiment transfer`: the reference experiment in one command.

Stages, each one call of the library the other commands use, each in its own folder under RUN_DIR and skipped when a
re-run finds it finished (an interrupted training stage resumes from its checkpoint):

1. ``data/source``, ``data/target`` — the dataset recipes (``nnc-tl dataset``);
2. ``source`` — export the network for the source classes and train it (``nnc-tl export`` + ``train``), or take
   ``--source-weights``, or the user's own trained ``--source-project`` (``nnc-tl retarget`` then makes both arms);
3. ``scratch-s<seed>`` — export for the target classes and train from scratch;
4. ``transfer-s<seed>`` — export with the source weights ("Open with Weight"), apply the freeze overlay, train;
5. ``report.md`` and a self-contained ``report.html`` from the runs' own ``summary.json`` and evaluations.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

from ..data.models import is_model, model_of
from ..data.recipes import load_recipe, make_dataset, resolve_source
from ..errors import NncToolsError
from ..fileio import PathLike, atomic_output, link_if_identical
from ..formats.nnc_csv import read_header_and_count
from ..project.export import export_network
from ..project.freeze import apply_freeze
from ..project.retarget import RetargetOptions, retarget
from ..training.checkpoint import CHECKPOINT
from ..training.evaluate import evaluate
from ..training.records import read_summary
from ..training.train import TrainOptions, train
from .config import ExperimentConfig
from .datasets import class_count_of, csv_of, user_csvs, user_data_record, user_data_settings
from .overlays import DERIVED, check_overlays_fit, derived_overlays, fine_tune_phases
from .report import write_report
from .stages import StageRecord, finished_stages, read_stage, write_stage

log = logging.getLogger(__name__)


def monitor_interval(config: ExperimentConfig, epochs: int) -> int:
    """The training-set monitor's interval: the config's ``monitor_interval``, else about ten points over the run
    (nnabla_cli's default of 10 epochs would give a short run one point, at its end). It runs a forward pass over every
    training image (as nnabla_cli's does), which on a small run costs a third as much as training: a short demo sets it
    sparser. It changes what the learning curves show, never the trained weights, so it is no stage setting."""
    return config.monitor_interval or max(1, epochs // 10)


def _finished_stage(folder: Path, settings: Dict, remove: bool = True) -> Optional[StageRecord]:
    """The stage's record when it finished with these settings; a stage finished with other settings (another epoch
    count, recipe, seed …) is removed (with ``remove``), to run again."""
    record = read_stage(folder)
    if record is None:
        return None
    if record.settings == settings:
        return record
    if not remove:
        return None
    log.info(f"[experiment] {folder.name}: its settings changed, running it again")
    shutil.rmtree(folder)
    return None


def _user_data(config: ExperimentConfig, role: str):
    value = config.source_data if role == "source" else config.target_data
    return None if value is None else user_csvs(value, config.path, f"{role}_data")


def _data_settings(config: ExperimentConfig, role: str, synthetic: bool, archives: Dict) -> Dict:
    """What a dataset stage is made from: the recipe, generated data or the archive, the images per class; or the
    user's CSVs."""
    csvs = _user_data(config, role)
    if csvs is not None:
        return user_data_settings(csvs)
    recipe = config.source_recipe if role == "source" else config.target_recipe
    kind = "cifar10" if recipe.startswith("cifar10") else "cifar100"
    return {"recipe": recipe, "synthetic": synthetic, "per_class": (config.synthetic_per_class or {}).get(role),
            "archive": None if synthetic else archives.get(kind)}


def _train_stage(folder: Path, project: Path, epochs: int, batch_size: int, seed: int, test_csv: Path, settings: Dict,
                 phases: Optional[Path] = None) -> StageRecord:
    """Train (resuming an interrupted run; in phases for the fine-tune arm) and evaluate on the test set; the stage's
    record comes from its own files."""
    result_dir = folder / "result"
    options = TrainOptions(epochs=epochs, batch_size=batch_size, seed=seed, resume=(result_dir / CHECKPOINT).exists(),
                           progress=True, phases=phases)
    train(project, result_dir, options)
    test = evaluate(result_dir / "results.nnp", test_csv, folder / "test", batch_size=batch_size, cache=folder / "cache")
    record = write_stage(folder, StageRecord(settings, summary=read_summary(result_dir), test_accuracy=test.accuracy,
                                             result_dir="result", test_dir="test"))
    link_if_identical(result_dir / "results_current.nnp", result_dir / "results.nnp")  # the last epoch was the best
    for leftover in (result_dir / CHECKPOINT, result_dir / "cache", folder / "cache"):  # a finished stage never resumes
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return record


def run_transfer(run_dir: PathLike, config: ExperimentConfig, *, synthetic: bool = False, cifar10: Optional[str] = None,
                 cifar100: Optional[str] = None, source_weights: Optional[PathLike] = None,
                 source_project: Optional[PathLike] = None, verify: bool = True) -> Path:
    """Run every stage that is not finished yet, then write the report; returns the path of ``report.html``.

    ``source_weights``: the source model's parameters (no source pretraining; the target network is still exported from
    the zoo). ``source_project`` (or the config's ``source_project``): the user's own trained project; no pretraining,
    and both arms are that network retargeted to the target classes, scratch with every parameter drawn anew."""
    run_dir = Path(run_dir)
    archives = {"cifar10": cifar10, "cifar100": cifar100}
    if source_project is None and config.source_project:
        source_project = config.source_project if is_model(config.source_project) else config.path(config.source_project)
    model = model_of(source_project) if source_project is not None else None  # imagenet:NAME, fetched and checked
    source_project = model.path if model is not None else source_project
    given = _given_source(source_weights, source_project)
    _check_unused_settings(config, synthetic, given is not None)
    derived = derived_overlays(config, source_project is not None)
    overlay = None if "transfer" in derived else config.path(config.overlay)
    if overlay is not None and not overlay.is_file():
        raise NncToolsError(overlay, "freeze overlay not found")
    phases = None if "fine-tune" in derived else fine_tune_phases(config)
    _check_archives(run_dir, config, synthetic, archives, verify, with_source=given is None)
    check_overlays_fit(config, overlay, phases, derived, source_project)
    created = not run_dir.exists()
    try:
        return _run_stages(run_dir, config, synthetic, archives, verify, source_weights, source_project, given,
                           derived, overlay, phases, model)
    except NncToolsError:
        if created and not finished_stages(run_dir):  # nothing a re-run could reuse: no folder left behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run_stages(run_dir: Path, config: ExperimentConfig, synthetic: bool, archives: Dict, verify: bool,
                source_weights: Optional[Path], source_project: Optional[Path], given: Optional[Path],
                derived: Dict[str, str], overlay: Optional[Path], phases: Optional[Path], model=None) -> Path:
    """Every stage that is not finished yet, then the report (``run_transfer`` has checked what they need)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for kind, text in derived.items():  # overlays stated by rule for the user's own network, kept with the run
        with atomic_output(run_dir / DERIVED[kind]) as temp:
            temp.write_text(text, encoding="utf-8")
    overlay = overlay or run_dir / DERIVED["transfer"]
    phases = phases or (run_dir / DERIVED["fine-tune"] if "fine-tune" in derived else None)
    with atomic_output(run_dir / "config.json") as temp:
        temp.write_text(json.dumps({**asdict(config), "base": str(config.base), "synthetic": synthetic,
                                    "given": sorted(config.given), "flags": sorted(config.flags),
                                    "derived": {kind: DERIVED[kind] for kind in derived},
                                    "source_weights": None if source_weights is None else str(source_weights),
                                    "source_project": None if source_project is None else str(source_project),
                                    "source_model": None if model is None else {
                                        "name": model.model.name, "origin": model.origin, "sha256": model.sha256,
                                        "crop": model.model.crop}}, indent=2) + "\n")

    data = _dataset_stages(run_dir, config, synthetic, archives, verify, given is None)
    common = dict(batch_size=config.batch_size, solver=config.solver, lr=config.lr)
    training = {"network": config.network if source_project is None else None, **common}
    if given is None:
        source = {**training, "data": _data_settings(config, "source", synthetic, archives), "epochs": config.source_epochs}
        source_weights = _source_stage(run_dir / "source", config, data["source"], source, common)
    else:
        source = {"project" if source_project else "weights": str(given), "bytes": given.stat().st_size,
                  "modified": given.stat().st_mtime_ns}
    target = {**training, "data": _data_settings(config, "target", synthetic, archives), "epochs": config.target_epochs}
    for seed in range(config.seeds):
        for kind in config.arms:
            settings = {**target, "kind": kind, "seed": seed}
            if kind != "scratch" or source_project is not None:
                settings.update(source=source)
            if kind == "transfer":
                settings.update(overlay=overlay.read_text(encoding="utf-8"))
            if kind == "fine-tune":
                settings.update(phases=phases.read_text(encoding="utf-8"))
            use = overlay if kind == "transfer" else None
            if source_project is not None:
                make = functools.partial(_retargeted, given, use, kind == "scratch", config)
            else:
                make = functools.partial(_exported, None if kind == "scratch" else source_weights, use, config)
            _target_stage(run_dir / f"{kind}-s{seed}", config, data["target"], settings, make,
                          phases if kind == "fine-tune" else None)
    return write_report(run_dir, config)


def _check_unused_settings(config: ExperimentConfig, synthetic: bool, source_given: bool) -> None:
    """Settings that would be silently ignored are refused: they mean the user expects something else."""
    if source_given and config.source_data is not None:
        raise NncToolsError(config.base, "source_data: not used when the source is given (--source-weights or "
                            "--source-project: no pretraining); remove it, or drop the source flag")
    own = [role for role in ("source", "target") if getattr(config, f"{role}_data") is not None]
    needed = ["target"] + ([] if source_given else ["source"])
    if synthetic and set(needed) <= set(own):
        raise NncToolsError(None, f"--synthetic: every dataset this run uses is your own CSVs ({', '.join(own)}_data in "
                            "the config); there is nothing to generate")


def _data_name(config: ExperimentConfig, role: str) -> str:
    """What the progress lines call a role's data: the recipe, or the user's own CSVs."""
    csvs = _user_data(config, role)
    return f"your CSVs in {csvs['training'].parent}" if csvs is not None else getattr(config, f"{role}_recipe")


def _given_source(weights: Optional[PathLike], project: Optional[PathLike]) -> Optional[Path]:
    if weights is not None and project is not None:
        raise NncToolsError(project, "give the source as --source-weights or as --source-project, not both")
    given = weights if weights is not None else project
    if given is None:
        return None
    given = Path(given).resolve()
    if not given.is_file():
        raise NncToolsError(given, "no such source file")
    return given


def _check_archives(run_dir: Path, config: ExperimentConfig, synthetic: bool, archives: Dict, verify: bool,
                    with_source: bool) -> None:
    """Every archive a dataset stage still needs is there (and whole) before anything is written."""
    for role, recipe in (("source", config.source_recipe), ("target", config.target_recipe)):
        csvs = _user_data(config, role)
        if csvs is not None:  # the user's CSVs are read once here, before anything is written
            if role == "target" or with_source:
                for path in csvs.values():
                    read_header_and_count(path)
            continue
        stage = _data_settings(config, role, synthetic, archives)
        if not synthetic and (role == "target" or with_source) and \
                not _finished_stage(run_dir / "data" / role, stage, remove=False):
            loaded = load_recipe(recipe if not recipe.endswith((".yaml", ".yml")) else str(config.path(recipe)))
            resolve_source(loaded, archives.get(loaded.source), False, verify)


def _dataset_stages(run_dir: Path, config: ExperimentConfig, synthetic: bool, archives: Dict, verify: bool,
                    with_source: bool) -> Dict[str, Path]:
    """``data/source`` (unless the source weights are given) and ``data/target``: the recipes' datasets."""
    data = {}
    for role, recipe in (("source", config.source_recipe), ("target", config.target_recipe)):
        if role == "source" and not with_source:
            continue
        folder = run_dir / "data" / role
        csvs = _user_data(config, role)
        settings = user_data_settings(csvs) if csvs is not None else _data_settings(config, role, synthetic, archives)
        if csvs is not None:
            if not _finished_stage(folder, settings):
                folder.mkdir(parents=True, exist_ok=True)
                write_stage(folder, user_data_record(csvs))
        elif not _finished_stage(folder, settings):
            log.info(f"[experiment] dataset {recipe} -> {folder}")
            kind = "cifar10" if recipe.startswith("cifar10") else "cifar100"
            recipe_ref = recipe if not recipe.endswith((".yaml", ".yml")) else str(config.path(recipe))
            result = make_dataset(recipe_ref, folder, source=archives.get(kind), synthetic=synthetic, verify=verify,
                                  synthetic_per_class=(config.synthetic_per_class or {}).get(role))
            write_stage(folder, StageRecord(settings, counts=result.counts, per_class=result.per_class,
                                            classes=result.classes))
        data[role] = folder
    return data


def _source_stage(folder: Path, config: ExperimentConfig, data: Path, settings: Dict, common: Dict) -> Path:
    """The network exported for the source classes and trained on them; its best weights."""
    if not _finished_stage(folder, settings):
        log.info(f"[experiment] source: {config.network} on {_data_name(config, 'source')}, {config.source_epochs} epochs")
        folder.mkdir(parents=True, exist_ok=True)
        classes = class_count_of(data)
        export_network(config.network, folder / "project.nnp", train_csv=csv_of(data, "training"),
                       val_csv=csv_of(data, "validation"), classes=classes, epochs=config.source_epochs,
                       monitor_interval=monitor_interval(config, config.source_epochs), **common)
        _train_stage(folder, folder / "project.nnp", config.source_epochs, config.batch_size, 0, csv_of(data, "test"),
                     settings)
    return folder / "result" / "results.nnp"


def _target_stage(folder: Path, config: ExperimentConfig, data: Path, settings: Dict, make, phases: Optional[Path]) -> None:
    """A target run: its project made by ``make`` (once; an interrupted run resumes), trained, evaluated."""
    if _finished_stage(folder, settings):
        return
    kind, seed = settings["kind"], settings["seed"]
    log.info(f"[experiment] {kind} (seed {seed}): {settings['network'] or 'the source project'} on {_data_name(config, 'target')}, "
             f"{config.target_epochs} epochs")
    folder.mkdir(parents=True, exist_ok=True)
    project = folder / "project.nnp"
    if not project.exists():
        make(project, data, class_count_of(data), seed)
    _train_stage(folder, project, config.target_epochs, config.batch_size, seed, csv_of(data, "test"), settings, phases)


def _exported(weights: Optional[Path], overlay: Optional[Path], config: ExperimentConfig, project: Path, data: Path,
              classes: int, seed: int) -> None:
    """The zoo network exported for the target: from scratch, or ("Open with Weight") from the source weights, with the
    overlay applied (transfer) or as it is (fine-tune: its phases set the multipliers)."""
    export_network(config.network, project, train_csv=csv_of(data, "training"), val_csv=csv_of(data, "validation"),
                   classes=classes, epochs=config.target_epochs, seed=seed, weights=weights,
                   monitor_interval=monitor_interval(config, config.target_epochs), batch_size=config.batch_size,
                   solver=config.solver, lr=config.lr)
    if overlay is not None:
        apply_freeze(project, overlay)


def _retargeted(source: Path, overlay: Optional[Path], scratch: bool, config: ExperimentConfig, project: Path, data: Path,
                classes: int, seed: int) -> None:
    """The user's project retargeted to the target: with the overlay (transfer), as it is (fine-tune), or every parameter
    drawn anew (scratch)."""
    retarget(source, project, RetargetOptions(
        csv_of(data, "training"), csv_of(data, "validation"), classes=classes, overlay=overlay, scratch=scratch,
        epochs=config.target_epochs, batch_size=config.batch_size, solver=config.solver, lr=config.lr, seed=seed,
        monitor_interval=monitor_interval(config, config.target_epochs)))
