"""Project I/O on a large generated .nnp: `nnc-tl apply-freeze` (a network-only edit) as a user runs it, beside `cp` of
the same file, time and peak RSS, each the median of 9 alternating runs (each after a ``sync``); and a full parameter
decode.

Either command writes 512 MB of new page cache. On the development VM (virtio-balloon with free page reporting: the
guest hands freed memory back to the host) that sometimes lands on pages the host must fault in again, and a run takes
0.4–0.6 s more, `cp` as much as `apply-freeze` (measured: six pairs all at 0.6–1.0 s in one spell, 0.15–0.3 s in the
next); nine alternating runs keep a few such runs of one command from deciding the median.

Size with NNC_TL_BENCH_MB (default 512). Every measurement is its own process (its own peak RSS from wait4).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from nnc_tools.formats.nnp import Project, save_project
from nnc_tools.formats.parameters import Parameter
from nnc_tools.formats.schema import nnabla_pb2

from .measure import measured

RUNS = 9
DECODE = """
import sys
from nnc_tools.formats.nnp import load_project
n = sum(p.data.size for p in load_project(sys.argv[1]).parameters.values())
"""


def make_big_nnp(path: Path, megabytes: int) -> None:
    proto = nnabla_pb2.NNablaProtoBuf()
    opt = proto.optimizer.add()
    opt.name = "Optimizer"
    net = proto.network.add()
    net.name = "Main"
    params = OrderedDict()
    per = 1 << 20  # 4 MiB float32 arrays
    rng = np.random.RandomState(0)
    for i in range(max(1, megabytes // 4)):
        name = f"Affine_{i + 1}/affine/W" if i else "Affine/affine/W"
        params[name] = Parameter(name, rng.standard_normal(per).astype(np.float32).reshape(1024, 1024))
        var = net.variable.add()
        var.name, var.type = name, "Parameter"
        var.shape.dim.extend([1024, 1024])
        pv = opt.parameter_variable.add()
        pv.variable_name, pv.learning_rate_multiplier = name, 1
    save_project(Project(proto, params), path)


def run(work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    megabytes = int(os.environ.get("NNC_TL_BENCH_MB", "512"))
    big = work / "big.nnp"
    t = time.perf_counter()
    make_big_nnp(big, megabytes)
    made = time.perf_counter() - t
    overlay = work / "freeze-affine.yaml"
    overlay.write_text("freeze: [Affine]\n")
    copied, edited = work / "copied.nnp", work / "edited.nnp"
    script = Path(sys.executable).with_name("nnc-tl")  # the command as a user runs it
    nnc_tl = [str(script)] if script.exists() else [sys.executable, "-m", "nnc_tools.cli"]
    cp, freeze = [], []
    for _ in range(RUNS):
        for target, sample, command in ((copied, cp, ["cp", big, copied]),
                                        (edited, freeze, nnc_tl + ["apply-freeze", big, "-c", overlay, "-o", edited])):
            target.unlink(missing_ok=True)
            os.sync()  # the previous run's 500 MB still being written back would slow whichever runs next
            _, wall, peak = measured(command)
            sample.append((wall, peak))
    _, decode_s, decode_rss = measured([sys.executable, "-c", DECODE, big])
    cp_s = statistics.median(w for w, _ in cp)
    freeze_s = statistics.median(w for w, _ in freeze)
    return {
        "nnp_mb": round(big.stat().st_size / 2**20, 1),
        "generate_s": round(made, 2),
        "cp_s": round(cp_s, 3),
        "cp_s_each": [round(w, 3) for w, _ in cp],
        "cp_peak_rss_mb": max(p for _, p in cp),
        "apply_freeze_s": round(freeze_s, 3),
        "apply_freeze_s_each": [round(w, 3) for w, _ in freeze],
        "apply_freeze_peak_rss_mb": max(p for _, p in freeze),
        "apply_freeze_vs_cp": round(freeze_s / max(cp_s, 1e-9), 2),
        "decode_all_parameters_s": round(decode_s, 3),
        "decode_all_parameters_peak_rss_mb": decode_rss,
    }


def table(r: dict) -> str:
    return "\n".join([
        f"| {r['nnp_mb']:.0f} MB .nnp | time (s), median | peak RSS (MB) |", "|---|---:|---:|",
        f"| `cp` | {r['cp_s']} (runs: {', '.join(map(str, r.get('cp_s_each', [])))}) | {r['cp_peak_rss_mb']} |",
        f"| `nnc-tl apply-freeze` (network edit) | {r['apply_freeze_s']} (**{r['apply_freeze_vs_cp']}× cp**; runs: "
        f"{', '.join(map(str, r.get('apply_freeze_s_each', [])))}) | {r['apply_freeze_peak_rss_mb']} |",
        f"| decode every parameter (library) | {r['decode_all_parameters_s']} | {r['decode_all_parameters_peak_rss_mb']} |",
    ])
