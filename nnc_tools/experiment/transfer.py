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

import base64
import html
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from ..data.recipes import load_recipe, make_dataset, resolve_source
from ..errors import NncToolsError, reject_unknown_keys
from ..training.evaluate import evaluate
from ..project.export import export_network
from ..fileio import PathLike, atomic_output
from ..project.freeze import apply_freeze
from ..training.plots import plot_learning_curves
from ..training.train import EpochRecord, TrainOptions, train

PUBLISHED = {"scratch": {"accuracy": 0.574, "wall": "7h16m"}, "transfer": {"accuracy": 0.601, "wall": "5h09m"},
             "settings": "mini_VGGnet_mark2, batch 64, 50 epochs, NNC on a GPU; transfer froze W and b of Convolution … Convolution_6"}
REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_KEYS = {"network", "source_recipe", "target_recipe", "overlay", "source_epochs", "target_epochs", "batch_size", "solver",
               "lr", "seeds", "synthetic_per_class"}


@dataclass
class ExperimentConfig:
    network: str = "mini_vggnet_mark2"
    source_recipe: str = "cifar10"
    target_recipe: str = "cifar100-aquatic"
    overlay: str = "networks/mini_vggnet_mark2.freeze-conv1-6.yaml"  # relative: to the config file, else this checkout
    source_epochs: int = 50
    target_epochs: int = 50
    batch_size: int = 64
    solver: str = "Momentum"
    lr: float = 0.01
    seeds: int = 1
    synthetic_per_class: Dict[str, Optional[int]] = field(default_factory=dict)  # {"source": N, "target": N} for --synthetic
    base: Path = Path(".")  # where relative paths in the config are resolved

    def path(self, value: str) -> Path:
        """A path from the config: relative to the config's folder, else to this checkout (networks/, datasets/)."""
        p = Path(value)
        if p.is_absolute():
            return p
        for root in (self.base, REPO_ROOT):
            if (root / p).exists():
                return root / p
        return self.base / p


def load_config(path: Optional[PathLike], **overrides) -> ExperimentConfig:
    """The experiment's settings: defaults (the reference experiment), then the YAML file, then flags."""
    config = ExperimentConfig()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise NncToolsError(path, "no such experiment config") from None
        except (OSError, yaml.YAMLError) as e:
            raise NncToolsError(path, f"not a readable YAML config: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict):
            raise NncToolsError(path, "an experiment config must be a mapping")
        reject_unknown_keys(data, CONFIG_KEYS, path)
        for key, value in data.items():
            setattr(config, key, value)
        config.base = path.resolve().parent
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if config.seeds < 1 or config.source_epochs < 1 or config.target_epochs < 1 or config.batch_size < 1:
        raise NncToolsError(path, "seeds, epochs and batch_size must be positive")
    return config


def _done(folder: Path) -> Optional[Dict]:
    marker = folder / "stage.json"
    return json.loads(marker.read_text()) if marker.is_file() else None


def _finish(folder: Path, record: Dict) -> Dict:
    with atomic_output(folder / "stage.json") as temp:
        temp.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _say(message: str) -> None:
    print(f"[experiment] {message}", flush=True)


def _train_stage(folder: Path, project: Path, epochs: int, batch_size: int, seed: int, test_csv: Path) -> Dict:
    """Train (resuming an interrupted run) and evaluate on the test set; the stage's record comes from its own files."""
    result_dir = folder / "result"
    options = TrainOptions(epochs=epochs, batch_size=batch_size, seed=seed, resume=(result_dir / "checkpoint.zip").exists(),
                           progress=True)
    train(project, result_dir, options)
    test = evaluate(result_dir / "results.nnp", test_csv, folder / "test", batch_size=batch_size, cache=folder / "cache")
    summary = json.loads((result_dir / "summary.json").read_text())
    return _finish(folder, {"summary": summary, "test_accuracy": test["accuracy"], "result_dir": str(result_dir),
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
        if not synthetic and not (role == "source" and source_weights is not None) and not _done(run_dir / "data" / role):
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
        if not _done(folder):
            _say(f"dataset {recipe} -> {folder}")
            kind = "cifar10" if recipe.startswith("cifar10") else "cifar100"
            recipe_ref = recipe if not recipe.endswith((".yaml", ".yml")) else str(config.path(recipe))
            result = make_dataset(recipe_ref, folder, source=archives.get(kind), synthetic=synthetic, verify=verify,
                                  synthetic_per_class=(config.synthetic_per_class or {}).get(role))
            _finish(folder, {"counts": result.counts, "classes": result.classes})
        data[role] = folder

    common = dict(batch_size=config.batch_size, solver=config.solver, lr=config.lr)
    if source_weights is None:
        folder = run_dir / "source"
        if not _done(folder):
            _say(f"source: {config.network} on {config.source_recipe}, {config.source_epochs} epochs")
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
            if _done(folder):
                continue
            _say(f"{kind} (seed {seed}): {config.network} on {config.target_recipe}, {config.target_epochs} epochs")
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


# ------------------------------------------------------------------------------------------------------------- report


def _runs(run_dir: Path, kind: str) -> List[Dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob(f"{kind}-s*/stage.json"))]


def _stat(values: List[float], fmt: str) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def comparison(run_dir: Path) -> List[Dict[str, str]]:
    """The comparison table, computed from the runs' own ``stage.json``/``summary.json`` files."""
    rows = []
    for kind, label in (("scratch", "from scratch"), ("transfer", "transfer (frozen low layers)")):
        runs = _runs(run_dir, kind)
        if not runs:
            continue
        s = [r["summary"] for r in runs]
        best_epochs = [x["best_epoch"] for x in s]
        rows.append({
            "run": label,
            "seeds": str(len(runs)),
            "test accuracy": _stat([100 * r["test_accuracy"] for r in runs], "{:.1f} %"),
            "best validation accuracy": _stat([100 * (x["best_valid_accuracy"] or 0) for x in s], "{:.1f} %"),
            "epochs to best": _stat([float(e) for e in best_epochs], "{:.0f}"),
            "wall time": _stat([x["wall_seconds"] for x in s], "{:.0f} s"),
            "training img/s": _stat([x["images_per_second"] for x in s], "{:.1f}"),
            "frozen parameters": f"{s[0]['frozen_parameter_values']:,}",
        })
    return rows


def _markdown_table(rows: List[Dict[str, str]]) -> str:
    if not rows:
        return "(no finished runs)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _history(result_dir: Path) -> List[EpochRecord]:
    import csv

    out = []
    with open(result_dir / "training_log.csv", newline="") as f:
        for row in csv.DictReader(f):
            value = lambda k: float(row[k]) if row[k] not in ("", "None") else None  # noqa: E731
            out.append(EpochRecord(int(row["epoch"]), float(row["cost"]), value("train_error"), value("valid_error"),
                                   value("valid_accuracy"), float(row["seconds"]), float(row["images_per_second"])))
    return out


def write_report(run_dir: PathLike, config: ExperimentConfig) -> Path:
    """``report.md`` (images beside it) and ``report.html`` (images embedded) from the finished runs."""
    run_dir = Path(run_dir)
    rows = comparison(run_dir)
    first = {kind: runs[0] for kind in ("scratch", "transfer") if (runs := _runs(run_dir, kind))}  # seed 0 of each
    curves = {kind: _history(Path(run["result_dir"])) for kind, run in first.items()}
    plot_learning_curves(curves, run_dir / "learning_curves.png", title="Target training (seed 0): scratch vs transfer")
    matrices = {kind: Path(run["test_dir"]) / "confusion_matrix.png" for kind, run in first.items()}
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items() if k != "base"}
    published = (f"Published reference (the seed experiment in NNC, not produced by this run): from scratch "
                 f"{PUBLISHED['scratch']['accuracy']:.1%} in {PUBLISHED['scratch']['wall']}, transfer "
                 f"{PUBLISHED['transfer']['accuracy']:.1%} in {PUBLISHED['transfer']['wall']} ({PUBLISHED['settings']}).")
    md = ["# Transfer learning: scratch vs transfer", "", _markdown_table(rows), "", published, "",
          "![learning curves](learning_curves.png)", ""]
    md += [f"![{kind} confusion matrix]({path.relative_to(run_dir)})" for kind, path in matrices.items()]
    md += ["", "## Settings", "", "```yaml", yaml.safe_dump(settings, sort_keys=False).strip(), "```", ""]
    with atomic_output(run_dir / "report.md") as temp:
        temp.write_text("\n".join(md))

    def img(path: Path, alt: str) -> str:
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    table = "<table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in (rows[0] if rows else {})) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r.values()) + "</tr>" for r in rows) + "</table>"
    body = [
        "<h1>Transfer learning: scratch vs transfer</h1>", table, f'<p class="ref">{html.escape(published)}</p>',
        "<h2>Learning curves</h2>", img(run_dir / "learning_curves.png", "learning curves"),
        "<h2>Confusion matrices (test set)</h2>",
        '<div class="row">' + "".join(f"<figure>{img(p, k)}<figcaption>{k}</figcaption></figure>" for k, p in matrices.items()) + "</div>",
        "<h2>Settings</h2>", f"<pre>{html.escape(yaml.safe_dump(settings, sort_keys=False))}</pre>",
    ]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse}"
             "th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f0f4f8}td:first-child{text-align:left}"
             ".ref{color:#666;font-style:italic}img{max-width:100%}.row{display:flex;gap:1em}figure{margin:0;flex:1}"
             "figcaption{text-align:center}")
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nnc-tl transfer report</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    with atomic_output(run_dir / "report.html") as temp:
        temp.write_text(page, encoding="utf-8")
    return run_dir / "report.html"


def headline(run_dir: PathLike) -> str:
    return _markdown_table(comparison(Path(run_dir)))
