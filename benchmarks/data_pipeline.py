"""Data pipeline: `nnc-tl dataset` on a generated CIFAR-100-size archive (60,000 images) with 1 and all workers, the
first decode of a dataset CSV through NNabla's iterator (nothing kept from earlier runs), its reload from the kept uint8
arrays (what later runs do), and batch assembly from the decoded arrays.

NNC_TL_BENCH_DATASET_PER_CLASS (default 500, the real size) scales the archive; NNC_TL_BENCH_SKIP_DATASET=1 skips it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from nnc_tools.data.cifar import read_cifar
from nnc_tools.data.decoded import load_dataset
from nnc_tools.data.recipes import BUILTIN, build, make_dataset
from nnc_tools.data.synthetic import generate, write_archive

from .measure import usable_cores


def run(work: Path) -> dict:
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    if os.environ.get("NNC_TL_BENCH_SKIP_DATASET") != "1":
        per_class = int(os.environ.get("NNC_TL_BENCH_DATASET_PER_CLASS", "500"))
        archive = work / "cifar100-size.tar.gz"
        t = time.perf_counter()
        write_archive(generate("cifar100", per_class, per_class // 5), archive)
        results["generate_archive_s"] = round(time.perf_counter() - t, 1)
        data = read_cifar(archive)
        results["images"] = int(len(data.train.labels) + len(data.test.labels))
        for workers in sorted({1, usable_cores()}):
            out = work / f"dataset_w{workers}"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            build(BUILTIN["cifar100"], data, out, workers=workers, progress=False)
            results[f"dataset_{workers}_workers_s"] = round(time.perf_counter() - t, 1)
    aquatic = work / "aquatic"
    os.environ.setdefault("NNC_TL_CACHE", str(work / "cache"))
    make_dataset("cifar100-aquatic", aquatic, synthetic=True, synthetic_per_class=100)
    # The decoded arrays are kept in $NNC_TL_CACHE/decoded and reused by later runs: the first load is timed with that
    # kept copy (and NNabla's iterator cache) removed, then a second load, which reads the kept copy.
    previous = os.environ["NNC_TL_CACHE"]
    os.environ["NNC_TL_CACHE"] = str(work / "decode-home")
    try:
        for folder in ("decode-cache", "decode-home"):
            shutil.rmtree(work / folder, ignore_errors=True)
        for key in ("decode_img_s", "reload_img_s"):
            t = time.perf_counter()
            dataset = load_dataset(aquatic / "training.csv", work / "decode-cache")
            results[key] = round(dataset.size / (time.perf_counter() - t), 1)
    finally:
        os.environ["NNC_TL_CACHE"] = previous
    results["decode_images"] = dataset.size
    rng = np.random.RandomState(0)
    t = time.perf_counter()
    batches = 0
    while time.perf_counter() - t < 2.0:
        dataset.batch(rng.randint(0, dataset.size, 64))
        batches += 1
    results["batch_assembly_img_s"] = round(batches * 64 / (time.perf_counter() - t), 1)
    return results


def table(r: dict) -> str:
    lines = ["| data pipeline | workers | result |", "|---|---:|---:|"]
    for key, value in r.items():
        if key.startswith("dataset_") and key.endswith("_workers_s"):
            workers = key[len("dataset_"):-len("_workers_s")]
            lines.append(f"| `nnc-tl dataset cifar100` on a generated {r['images']:,}-image archive | {workers} | {value} s |")
    lines.append(f"| decode a dataset CSV the first time (NNabla's iterator, then kept as uint8) | 1 | {r['decode_img_s']:,} img/s |")
    lines.append(f"| load it again (the kept uint8 arrays: later runs) | 1 | {r['reload_img_s']:,} img/s |")
    lines.append(f"| batch assembly from the decoded uint8 arrays (the training loader) | 1 | {r['batch_assembly_img_s']:,} img/s |")
    return "\n".join(lines)
