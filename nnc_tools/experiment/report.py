"""The experiment's report: the comparison table computed from the runs' own files, learning curves and confusion
matrices, as ``report.md`` (images beside it) and a self-contained ``report.html``."""

from __future__ import annotations

import base64
import html
import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List

import yaml

from ..fileio import PathLike, atomic_output
from ..training.plots import plot_learning_curves
from ..training.records import read_training_log
from .config import ExperimentConfig

PUBLISHED = {"scratch": {"accuracy": 0.574, "wall": "7h16m"}, "transfer": {"accuracy": 0.601, "wall": "5h09m"},
             "settings": "mini_VGGnet_mark2, batch 64, 50 epochs, NNC on a GPU; transfer froze W and b of Convolution … Convolution_6"}

def _runs(run_dir: Path, kind: str) -> List[Dict]:
    """The finished runs of a kind; their result and test folders as paths (stored relative to the stage's folder, so
    that a run folder moved or copied elsewhere still reads)."""
    runs = []
    for marker in sorted(run_dir.glob(f"{kind}-s*/stage.json")):
        run = json.loads(marker.read_text())
        for key in ("result_dir", "test_dir"):
            run[key] = marker.parent / run[key]
        runs.append(run)
    return runs


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


def write_report(run_dir: PathLike, config: ExperimentConfig) -> Path:
    """``report.md`` (images beside it) and ``report.html`` (images embedded) from the finished runs."""
    run_dir = Path(run_dir)
    rows = comparison(run_dir)
    first = {kind: runs[0] for kind in ("scratch", "transfer") if (runs := _runs(run_dir, kind))}  # seed 0 of each
    curves = {kind: read_training_log(run["result_dir"]) for kind, run in first.items()}
    plot_learning_curves(curves, run_dir / "learning_curves.png", title="Target training (seed 0): scratch vs transfer")
    matrices = {kind: run["test_dir"] / "confusion_matrix.png" for kind, run in first.items()}
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
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nnc-tl transfer report</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>")
    with atomic_output(run_dir / "report.html") as temp:
        temp.write_text(page, encoding="utf-8")
    return run_dir / "report.html"


def headline(run_dir: PathLike) -> str:
    return _markdown_table(comparison(Path(run_dir)))
