"""Training throughput, measured in one run: `nnabla_cli train` on the exported, unfrozen mini_vggnet_mark2 (what NNC
runs) against `nnc-tl train` full, frozen (the reference overlay freeze-conv1-6-bn, cache off) and frozen with the
prefix cache (the reference transfer run: cache auto, the reference's 50 epochs), each with 1 and all workers.

Synthetic aquatic data, batch 64, NNC_TL_BENCH_IMAGES training images (default 384). img/s: training images over the
training loop's time (nnabla_cli: its own epoch-1 log line; nnc-tl: summary.json, whose epoch time includes filling the
frozen-prefix cache). Validation is outside the loop for both. NNC_TL_BENCH_CACHED_EPOCHS changes the 50. The
one-epoch runs are repeated NNC_TL_BENCH_REPEATS times (default 5) and the reference transfer run (all workers)
NNC_TL_BENCH_REFERENCE_REPEATS times (default 3), interleaved with the others (the peer's runs among them); the
one-worker cached run, measured for the table only, runs once. The table gives medians and every run.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from nnc_tools.training.records import read_summary

from .measure import measured, usable_cores

REPO = Path(__file__).resolve().parents[1]
BATCH = 64


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)


def run(work: Path) -> dict:
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    images = int(os.environ.get("NNC_TL_BENCH_IMAGES", "384"))
    cached_epochs = int(os.environ.get("NNC_TL_BENCH_CACHED_EPOCHS", "50"))
    repeats = int(os.environ.get("NNC_TL_BENCH_REPEATS", "5"))
    reference_repeats = min(repeats, int(os.environ.get("NNC_TL_BENCH_REFERENCE_REPEATS", "3")))
    cli = [sys.executable, "-m", "nnc_tools.cli"]
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    per_class = max(2, images // 8)  # 80 % of it lands in training.csv
    _run(cli + ["dataset", "cifar100-aquatic", "--synthetic", "--synthetic-per-class", str(per_class), "-o", str(data)],
         env=dict(os.environ, NNC_TL_CACHE=str(work / "cache")))
    rows = sum(1 for _ in open(data / "training.csv")) - 1
    project = work / "full.nnp"
    _run(cli + ["export", "mini_vggnet_mark2", "-o", str(project), "--train-csv", str(data / "training.csv"),
                "--val-csv", str(data / "validation.csv"), "--epochs", "1", "--batch-size", str(BATCH)])
    frozen = work / "frozen.nnp"
    _run(cli + ["apply-freeze", str(project), "-c", str(REPO / "networks" / "mini_vggnet_mark2.freeze-conv1-6-bn.yaml"),
                "-o", str(frozen)])
    iterations = rows // BATCH
    exe = str(Path(sys.executable).with_name("nnabla_cli"))

    def nnabla_cli_run() -> tuple:
        out = work / "nnabla_cli"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        done, wall, peak = measured([exe, "train", "-c", str(project), "-o", str(out)], cwd=work)
        first = re.search(r"epoch 1 of 1 .*time=\(([\d.]+)s", done.stdout + done.stderr)
        if first is None:
            raise RuntimeError(f"nnabla_cli printed no epoch time:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return iterations * BATCH / float(first.group(1)), wall, peak

    def nnc_tl_run(key, source, extra, epochs, workers) -> tuple:
        result_dir = work / f"nnc_tl_{key}_w{workers}"
        shutil.rmtree(result_dir, ignore_errors=True)
        _, wall, peak = measured(cli + ["train", str(source), "-o", str(result_dir), "--epochs", str(epochs),
                                        "--workers", str(workers)] + extra)
        return read_summary(result_dir).images_per_second, wall, peak

    all_workers = usable_cores()
    plans = [("nnabla_cli", "nnabla_cli train (unfrozen, what NNC runs)", 1, 1, nnabla_cli_run)]
    for key, label, source, extra, epochs in [
            ("full", "nnc-tl train full", project, ["--cache-frozen", "off"], 1),
            ("frozen", "nnc-tl train frozen conv1-6+BN, no cache", frozen, ["--cache-frozen", "off"], 1),
            ("frozen_cached", "nnc-tl train frozen conv1-6+BN, prefix cache (reference transfer run)", frozen,
             ["--cache-frozen", "on"], cached_epochs)]:
        for workers in sorted({1, all_workers}):
            plans.append((key, label, workers, epochs,
                          lambda k=key, s=source, e=extra, n=epochs, w=workers: nnc_tl_run(k, s, e, n, w)))
    # This kind of machine (a shared VM) moves ±20 % between runs, and for minutes at a time: the runs a Done-when ratio
    # compares are repeated, interleaved, and their medians compared; a reference run is spread over the repeats that
    # hold the peer's runs.
    measurements = {i: [] for i in range(len(plans))}
    for repeat in range(repeats):
        for i, (key, label, workers, epochs, go) in enumerate(plans):
            reference = key == "frozen_cached" and workers == all_workers
            if runs_in_repeat(repeat, repeats, reference_repeats if reference else 0, epochs):
                measurements[i].append(go())
    runs = []
    for i, (key, label, workers, epochs, _) in enumerate(plans):
        rates = [m[0] for m in measurements[i]]
        runs.append({"run": label, "key": key, "workers": workers, "epochs": epochs,
                     "img_s": round(statistics.median(rates), 2), "img_s_each": [round(r, 2) for r in rates],
                     "wall_s": round(statistics.median(m[1] for m in measurements[i]), 1),
                     "peak_rss_mb": max((m[2] for m in measurements[i] if m[2]), default=None)})
    base = runs[0]["img_s"]
    for r in runs:
        r["x_nnabla_cli"] = round(r["img_s"] / base, 2)
    by = {(r["key"], r["workers"]): r["img_s"] for r in runs}
    results = {"training_images": rows, "batch_size": BATCH, "all_workers": all_workers, "runs": runs,
               "reference_transfer_vs_nnabla_cli": round(by[("frozen_cached", all_workers)] / base, 2),
               "full_all_workers_vs_one": round(by[("full", all_workers)] / by[("full", 1)], 2)}
    return results


def runs_in_repeat(repeat: int, repeats: int, spread: int, epochs: int) -> bool:
    """Whether a run is measured in this repeat: one-epoch runs in every repeat; a long run ``spread`` over that many
    repeats, evenly (0, 2, 4 of five for three), or else in the first only."""
    if epochs == 1:
        return True
    if not spread:
        return repeat == 0
    return repeat in {round(k * (repeats - 1) / max(spread - 1, 1)) for k in range(spread)}


def table(results: dict) -> str:
    lines = ["| training run | workers | epochs | img/s (median) | runs: img/s | × nnabla_cli | peak RSS (MB) | wall (s) |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in results["runs"]:
        each = ", ".join(f"{v:.1f}" for v in r.get("img_s_each", [r["img_s"]]))
        lines.append(f"| {r['run']} | {r['workers']} | {r['epochs']} | {r['img_s']:.1f} | {each} | {r['x_nnabla_cli']:.2f} | "
                     f"{r['peak_rss_mb'] or 'n/a'} | {r['wall_s']} |")
    lines.append("")
    lines.append(f"Reference transfer run (all workers) vs nnabla_cli: **{results['reference_transfer_vs_nnabla_cli']}×**; "
                 f"full training, {results['all_workers']} workers vs 1: **{results['full_all_workers_vs_one']}×** "
                 f"({results['training_images']} training images, batch {results['batch_size']}).")
    return "\n".join(lines)
