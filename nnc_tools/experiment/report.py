"""The experiment's report, every number read back from the stages' own files (``results``): what evidence it rests on
(data synthetic or real and its sizes, the source model and how well it did, the seeds and the test set), each arm's
figures, each seed's, each arm's paired difference from scratch with its 95 % interval, learning curves of every run
and their confusion matrices, and the settings each stage ran with; as ``report.md`` (images beside it) and a
self-contained ``report.html``."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from ..fileio import PathLike, atomic_output
from ..formats.naming import is_statistic, layer_of
from ..formats.nnp import load_project, multipliers
from ..project.freeze import apply_to_proto
from ..project.overlay import parse_overlay
from ..training.plots import plot_learning_curves
from .config import ExperimentConfig
from .results import (
    ARMS,
    BASELINE,
    SPREAD_NOTE,
    Run,
    arm_rows,
    difference_rows,
    percent,
    seed_rows,
    source_run,
    target_runs,
    title,
    verdicts,
)
from .stages import StageRecord, finished_stages, read_stage

# The seed experiment's own figures, as its author published them (another setup: real CIFAR, NNC, one CPU-only machine).
PUBLISHED = {
    "scratch": (0.574, "7 h 16 min"),
    "transfer": (0.601, "5 h 09 min"),
    "setup": "Neural Network Console on a machine without a GPU; mini_VGGnet_mark2; the source trained 10 epochs on the real "
             "CIFAR-10 (17 h 16 min); the target the 10 aquatic CIFAR-100 classes, 400 training + 100 validation images "
             "per class, batch 64, 50 epochs; the transfer run froze W and b of Convolution … Convolution_6 (their Batch "
             "Normalization trained)",
}


def _json(path: Path) -> Dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _data_stage(run_dir: Path, role: str) -> StageRecord:
    """The dataset stage of a role (``source``, ``target``); an empty record when it has not run."""
    return read_stage(run_dir / "data" / role) or StageRecord()


def _sizes(stage: StageRecord) -> str:
    counts = stage.counts
    text = " / ".join(f"{n:,} {split}" for split, n in counts.items()) + " images"
    per_class = stage.per_class
    if per_class:
        uniform = ["/".join(map(str, sorted(set(c.values())))) for c in per_class.values()]
        text += f", {' / '.join(uniform)} per class"
    return text


def _data_line(config: Dict, run_dir: Path) -> str:
    stages = {role: read_stage(run_dir / "data" / role) for role in ("source", "target")}
    own = {role: stage.csvs for role, stage in stages.items() if stage is not None and stage.user_data}
    if own:
        listed = "; ".join(f"{role}: `{Path(csvs['training']).parent}`" for role, csvs in own.items())
        rest = " (the other from its recipe)" if len(own) == 1 and stages.get("source") else ""
        return f"**Data: your own NNC dataset CSVs** ({listed}){rest}."
    if config.get("synthetic"):
        return ("**Data: synthetic.** CIFAR-format images nnc-tl generated (classes drawn from shared shapes, colours and "
                "textures), not CIFAR: the figures below say how the arms compare on that data, not what they give on CIFAR.")
    archives = sorted({s.settings.get("archive") for s in stages.values() if s is not None and s.settings} - {None})
    return f"**Data: real**, from {', '.join(f'`{a}`' for a in archives) or 'the archives given'}."


def _source_line(config: Dict, source: Optional[Run], run_dir: Path) -> str:
    model = config.get("source_model")
    if model:
        return (f"**Source model:** ImageNet {model['name']} as NNC trained it and Sony publishes it (`imagenet:"
                f"{model['name']}`), from {model['origin']}, sha256 `{model['sha256']}`; it classifies a "
                f"{model['crop']}x{model['crop']} crop, and the target images are scaled to it by the network's own "
                "preprocessing (fitted by `nnc-tl retarget`). Both arms are that network retargeted to the target's "
                "classes: transfer keeps its weights and applies the overlay, scratch draws every parameter anew.")
    if config.get("source_project"):
        return (f"**Source model:** your own project `{config['source_project']}` (given with `--source-project`; not "
                "trained or measured by this run). Both arms are that network retargeted to the target's classes "
                "(`nnc-tl retarget`): transfer keeps its weights and applies the overlay, scratch draws every parameter anew.")
    if config.get("source_weights"):
        return (f"**Source model:** the weights in `{config['source_weights']}` (given with `--source-weights`; not "
                "trained or measured by this run).")
    if source is None:
        return "**Source model:** not trained yet."
    epoch, _, at = source.lowest_loss
    data = _data_stage(run_dir, "source")
    test = "" if source.test_count is None else f", {percent(source.test_accuracy)} on its {source.test_count:,} test images"
    epochs = source.summary.epochs
    recipe = "your CSVs" if data.user_data else config.get("source_recipe")
    return (f"**Source model:** {config.get('network')} trained {epochs} epoch{'s' * (epochs != 1)} on {recipe} "
            f"({len(data.classes)} classes; {_sizes(data)}): validation accuracy {percent(at)} at its lowest "
            f"validation loss (epoch {epoch}){test}.")


def _frozen_line(config: Dict, runs: Dict[str, List[Run]]) -> str:
    """Which layers each arm froze (its last phase, from its run's own summary) and from which overlay."""
    derived = config.get("derived") or {}
    source = {"transfer": derived.get("transfer") or config.get("overlay"),
              "fine-tune": derived.get("fine-tune") or config.get("fine_tune")}
    parts = []
    for kind, label in ARMS:
        if kind not in runs or kind == BASELINE:
            continue
        phases = _frozen_per_phase(runs[kind][0].folder) if kind == "fine-tune" else None
        what = "; ".join(f"phase {k + 1}: {_frozen_layers(names)}" for k, names in enumerate(phases)) if phases else \
            _frozen_layers(runs[kind][0].summary.frozen_parameters) + (" in its last phase" if kind == "fine-tune" else "")
        given = f" (`{Path(source[kind]).name}`{', derived for your network' if kind in derived else ''})" if source[kind] else ""
        parts.append(f"{label}: {what}{given}")
    return "**Frozen:** " + "; ".join(parts) + "." if parts else ""


def _frozen_layers(frozen: List[str]) -> str:
    layers = list(dict.fromkeys(layer_of(p) for p in frozen))
    shown = ", ".join(layers[:6]) + (f" … {layers[-1]}" if len(layers) > 6 else "")
    return f"{len(frozen)} parameters of {len(layers)} layers ({shown})" if frozen else "no parameter"


def _frozen_per_phase(folder: Path) -> Optional[List[List[str]]]:
    """The parameters each phase of a fine-tune run froze: its phases file (kept in the stage's settings) applied to
    its project as ``train --phases`` applies them; None when either is not there."""
    import yaml

    settings, project = (read_stage(folder) or StageRecord()).settings, folder / "project.nnp"
    if not settings.get("phases") or not project.is_file():
        return None
    base = load_project(project).proto
    out = []
    for phase in parse_overlay(yaml.safe_load(settings["phases"]), folder / "phases.yaml").phases or []:
        trial = type(base)()
        trial.CopyFrom(base)
        apply_to_proto(trial, phase.overlay, project)
        out.append([n for n, m in multipliers(trial.optimizer[0]).items() if m == 0 and not is_statistic(n)])
    return out or None


def evidence(run_dir: Path, runs: Dict[str, List[Run]]) -> List[str]:
    """What the figures rest on, one bullet each."""
    config = _json(run_dir / "config.json")
    target = _data_stage(run_dir, "target")
    seeds = sorted({r.seed for arm in runs.values() for r in arm})
    counts = sorted({r.test_count for arm in runs.values() for r in arm if r.test_count is not None})
    test = " / ".join(f"{c:,}" for c in counts) or "n/a"
    return [
        _data_line(config, run_dir),
        f"**Target:** {'your CSVs' if target.user_data else config.get('target_recipe')} "
        f"({len(target.classes)} classes; {_sizes(target)}).",
        _source_line(config, source_run(run_dir), run_dir),
        *[line for line in [_frozen_line(config, runs)] if line],
        f"**Seeds:** {len(seeds)} ({', '.join(map(str, seeds))}). A seed sets every arm's initial parameters, data order and "
        "dropout; the datasets were made once and are the same for every seed.",
        f"**Test set:** {test} images, the same for every run; each run is evaluated with the parameters of its epoch of "
        "lowest validation loss (`results.nnp`, nnabla_cli's meaning of best). With this many images one image is "
        f"{100 / counts[0]:.1f} points of accuracy." if counts else "**Test set:** no evaluation found.",
    ]


def published(synthetic: bool) -> str:
    s, t = PUBLISHED["scratch"], PUBLISHED["transfer"]
    return (f"Another setup's numbers, for orientation only (the published seed experiment; not produced or checked by this "
            f"run): from scratch {s[0]:.1%} in {s[1]}, transfer {t[0]:.1%} in {t[1]} ({PUBLISHED['setup']}). Its data, seeds "
            f"and test set are not this run's{'; the figures above are on synthetic data' if synthetic else ''}.")


def _markdown_table(rows: List[Dict[str, str]]) -> str:
    if not rows:
        return "(no finished runs)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(rows: List[Dict[str, str]]) -> str:
    if not rows:
        return "<p>(no finished runs)</p>"
    head = "<tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in rows[0]) + "</tr>"
    return "<table>" + head + "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r.values()) + "</tr>"
                                      for r in rows) + "</table>"


def _stage_settings(run_dir: Path) -> str:
    """Each kind of stage's settings once, as YAML: the stages that differ only by their seed under one key naming them
    all (``scratch-s0, scratch-s1, scratch-s2``, with ``seed`` left out)."""
    groups: Dict[str, List] = {}  # settings without the seed (as YAML) -> [stage names, settings]
    for folder in finished_stages(run_dir):
        settings = read_stage(folder).settings
        if settings:
            shared = {k: v for k, v in settings.items() if k != "seed"}
            key = yaml.safe_dump(shared, sort_keys=True)
            groups.setdefault(key, [[], shared if "seed" in settings else settings])[0].append(
                folder.relative_to(run_dir).as_posix())
    return yaml.safe_dump({", ".join(names): settings for names, settings in groups.values()}, sort_keys=False,
                          allow_unicode=True, width=100).strip()


class _Report:
    """The report's parts, rendered twice (markdown and HTML)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.runs = target_runs(run_dir)
        self.synthetic = bool(_json(run_dir / "config.json").get("synthetic"))
        self.evidence = evidence(run_dir, self.runs)
        self.tables = [("Results", arm_rows(self.runs)), ("Each seed", seed_rows(self.runs)),
                       ("Against from scratch, seed by seed", difference_rows(self.runs))]
        self.curves = run_dir / "learning_curves.png"
        labels = dict(ARMS)
        histories = {f"{labels[k]} s{r.seed}": r.history for k, arm in self.runs.items() for r in arm if r.history}
        groups = {f"{labels[k]} s{r.seed}": labels[k] for k, arm in self.runs.items() for r in arm}
        plot_learning_curves(histories, self.curves, title="Target training: every run (colour: arm)", groups=groups)
        self.matrices = [(f"{labels[k]}, seed {r.seed}", r.test_dir / "confusion_matrix.png")
                         for k, arm in self.runs.items() for r in arm if (r.test_dir / "confusion_matrix.png").is_file()]
        self.settings = _stage_settings(run_dir)

    def markdown(self) -> str:
        md = [f"# {title(self.runs)}", "", "## What the data shows", ""] + [f"- {v}" for v in verdicts(self.runs)]
        md += ["", "## What these figures rest on", ""] + [f"- {line}" for line in self.evidence] + [""]
        for heading, rows in self.tables:
            md += [f"## {heading}", "", _markdown_table(rows), ""]
        md += [SPREAD_NOTE + ".", ""] if _spread_shown(self.runs) else []
        md += [published(self.synthetic), "", "## Learning curves and confusion matrices (test set)", "",
               f"![learning curves]({self.curves.name})", ""]
        md += [f"[![{alt}]({path.relative_to(self.run_dir).as_posix()})]({path.relative_to(self.run_dir).as_posix()})"
               for alt, path in self.matrices]  # each links to itself at full size
        md += ["", "## Settings each stage ran with", "", "```yaml", self.settings, "```", ""]
        return "\n".join(md)

    def html(self) -> str:
        def img(path: Path, alt: str) -> str:
            data = base64.b64encode(path.read_bytes()).decode()
            return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

        def inline(text: str) -> str:  # the evidence's **bold** and `code`, nothing else
            parts = html.escape(text).split("**")
            text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
            parts = text.split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

        body = [f"<h1>{html.escape(title(self.runs))}</h1>", "<h2>What the data shows</h2>",
                "<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts(self.runs)) + "</ul>",
                "<h2>What these figures rest on</h2>",
                "<ul>" + "".join(f"<li>{inline(line)}</li>" for line in self.evidence) + "</ul>"]
        for heading, rows in self.tables:
            body += [f"<h2>{html.escape(heading)}</h2>", _html_table(rows)]
        body += [f"<p>{html.escape(SPREAD_NOTE)}.</p>"] if _spread_shown(self.runs) else []
        body += [f'<p class="ref">{html.escape(published(self.synthetic))}</p>', "<h2>Learning curves</h2>",
                 img(self.curves, "learning curves"), "<h2>Confusion matrices (test set)</h2>",
                 '<div class="row">' + "".join(f"<figure>{img(p, alt)}<figcaption>{html.escape(alt)}</figcaption></figure>"
                                               for alt, p in self.matrices) + "</div>",
                 "<h2>Settings each stage ran with</h2>", f"<pre>{html.escape(self.settings)}</pre>"]
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse}"
                 "th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f0f4f8}"
                 "td:first-child{text-align:left}.ref{color:#666;font-style:italic}img{max-width:100%}"
                 ".row{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0;flex:1 1 45%;min-width:420px}figcaption{text-align:center}")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nnc-tl transfer report</title><style>{style}</style>"
                f"</head><body>{''.join(body)}</body></html>")


def write_report(run_dir: PathLike, config: Optional[ExperimentConfig] = None) -> Path:
    """``report.md`` (images beside it) and ``report.html`` (images embedded) from the finished runs; what the run was
    made with is read from its own ``config.json`` and stage records, so ``config`` is not needed."""
    run_dir = Path(run_dir)
    report = _Report(run_dir)
    with atomic_output(run_dir / "report.md") as temp:
        temp.write_text(report.markdown(), encoding="utf-8")
    with atomic_output(run_dir / "report.html") as temp:
        temp.write_text(report.html(), encoding="utf-8")
    return run_dir / "report.html"


def _spread_shown(runs: Dict[str, List[Run]]) -> bool:
    """Whether the tables show any a ± b (an arm with 3 seeds or more)."""
    return any(len(arm) >= 3 for arm in runs.values())


def headline(run_dir: PathLike) -> str:
    """The evidence and the comparison table, for the terminal."""
    run_dir = Path(run_dir)
    runs = target_runs(run_dir)
    lines = [f"- {line}".replace("**", "").replace("`", "") for line in evidence(run_dir, runs)]
    return "\n".join([title(runs)] + [f"- {v}" for v in verdicts(runs)] + lines +
                     ["", _markdown_table(arm_rows(runs))] + ([SPREAD_NOTE] if _spread_shown(runs) else []) +
                     ["", _markdown_table(difference_rows(runs))])
