"""Training throughput, measured in one run: `nnabla_cli train` on the exported mini_vggnet_mark2 (what NNC runs) against
`nnc-tl train` full, frozen (the reference transfer overlay with frozen BN) and frozen with the prefix cache.

Synthetic aquatic data, batch 64, NNC_TL_BENCH_IMAGES training images (default 256), two epochs; img/s counts the
training loop of the first epoch for nnabla_cli (its own log) and of all epochs for nnc-tl (summary.json).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)


def _peak_and_time(args, cwd=None):
    t = time.perf_counter()
    done = _run(["/usr/bin/time", "-f", "%M"] + args, cwd=cwd) if Path("/usr/bin/time").exists() else _run(args, cwd=cwd)
    wall = time.perf_counter() - t
    peak = None
    lines = done.stderr.strip().splitlines()
    if lines and lines[-1].strip().isdigit():
        peak = int(lines[-1]) / 1024
    return done, wall, peak


def run(work: Path) -> dict:
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    images = int(os.environ.get("NNC_TL_BENCH_IMAGES", "256"))
    env_py = sys.executable
    cli = [env_py, "-m", "nnc_tools.cli"]
    per_class = max(2, images // 8)  # 80 % of it lands in training.csv
    data = work / "data"
    _run(cli + ["dataset", "cifar100-aquatic", "--synthetic", "--synthetic-per-class", str(per_class), "-o", str(data)],
         env=dict(os.environ, NNC_TL_CACHE=str(work / "cache")))
    rows = sum(1 for _ in open(data / "training.csv")) - 1
    project = work / "full.nnp"
    _run(cli + ["export", "mini_vggnet_mark2", "-o", str(project), "--train-csv", str(data / "training.csv"),
                "--val-csv", str(data / "validation.csv"), "--epochs", "2", "--batch-size", "64"])
    frozen = work / "frozen.nnp"
    _run(cli + ["apply-freeze", str(project), "-c", str(REPO / "networks" / "mini_vggnet_mark2.freeze-conv1-6-bn.yaml"),
                "-o", str(frozen)])
    results = {"training_images": rows, "batch_size": 64, "cpu_count": os.cpu_count()}

    out = work / "nnabla_cli"
    out.mkdir(exist_ok=True)
    exe = str(Path(env_py).with_name("nnabla_cli"))
    done, wall, peak = _peak_and_time([exe, "train", "-c", str(project), "-o", str(out)], cwd=work)
    first = re.search(r"epoch 1 of 2 .*time=\(([\d.]+)s", done.stdout + done.stderr)
    iterations = rows // 64
    results["nnabla_cli_full_img_s"] = round(iterations * 64 / float(first.group(1)), 2) if first else None
    results["nnabla_cli_wall_s"] = round(wall, 1)
    results["nnabla_cli_peak_rss_mb"] = peak

    for name, source, extra in (("full", project, ["--cache-frozen", "off"]), ("frozen", frozen, ["--cache-frozen", "off"]),
                                ("frozen_cached", frozen, ["--cache-frozen", "on"])):
        result_dir = work / f"nnc_tl_{name}"
        if result_dir.exists():
            import shutil

            shutil.rmtree(result_dir)
        done, wall, peak = _peak_and_time(cli + ["train", str(source), "-o", str(result_dir)] + extra)
        summary = json.loads((result_dir / "summary.json").read_text())
        results[f"nnc_tl_{name}_img_s"] = summary["images_per_second"]
        results[f"nnc_tl_{name}_wall_s"] = round(wall, 1)
        results[f"nnc_tl_{name}_peak_rss_mb"] = peak
    base = results["nnabla_cli_full_img_s"]
    if base:
        for name in ("full", "frozen", "frozen_cached"):
            results[f"ratio_{name}_vs_nnabla_cli"] = round(results[f"nnc_tl_{name}_img_s"] / base, 2)
    return results
