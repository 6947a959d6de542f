"""Project I/O on a large generated .nnp: time and peak memory of a network-only edit (what apply-freeze does) beside `cp`
of the same file, and of a full parameter decode.

Size with NNC_TL_BENCH_MB (default 512). Each measurement runs in a fresh process and reads its own peak RSS (VmHWM, which execve resets).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from nnc_tools.nnp import Parameter, Project, save_project
from nnabla.utils import nnabla_pb2

EDIT = """
import sys, time
from nnc_tools.nnp import load_project, save_project
t = time.perf_counter()
p = load_project(sys.argv[1])
for o in p.proto.optimizer:
    for pv in o.parameter_variable:
        pv.learning_rate_multiplier = 0
save_project(p, sys.argv[2])
print(time.perf_counter() - t, [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024)
"""

DECODE = """
import sys, time
from nnc_tools.nnp import load_project
t = time.perf_counter()
n = sum(p.data.size for p in load_project(sys.argv[1]).parameters.values())
print(time.perf_counter() - t, [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024)
"""

BASELINE = """
import sys
import nnc_tools.nnp
print(0, [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024)
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


def _measure(script: str, *args: str):
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    seconds, rss = done.stdout.split()[-2:]
    return float(seconds), float(rss)


def run(work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    megabytes = int(os.environ.get("NNC_TL_BENCH_MB", "512"))
    big = work / "big.nnp"
    t = time.perf_counter()
    make_big_nnp(big, megabytes)
    made = time.perf_counter() - t
    _, base_rss = _measure(BASELINE)
    t = time.perf_counter()
    subprocess.run(["cp", str(big), str(work / "copied.nnp")], check=True)
    cp_s = time.perf_counter() - t
    edit_s, edit_rss = _measure(EDIT, str(big), str(work / "edited.nnp"))
    decode_s, decode_rss = _measure(DECODE, str(big))
    return {
        "nnp_mb": round(big.stat().st_size / 2**20, 1),
        "generate_s": round(made, 2),
        "import_baseline_rss_mb": round(base_rss, 1),
        "cp_s": round(cp_s, 3),
        "network_edit_s": round(edit_s, 3),
        "network_edit_vs_cp": round(edit_s / max(cp_s, 1e-9), 2),
        "network_edit_peak_rss_mb": round(edit_rss, 1),
        "decode_all_parameters_s": round(decode_s, 3),
        "decode_all_parameters_peak_rss_mb": round(decode_rss, 1),
    }
