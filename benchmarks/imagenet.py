"""Transfer from ImageNet ResNet-18, NNC's plugin's recipe against nnc-tl's, on the same project, data, epochs and machine.

The plugin's recipe (github:sony/nnc-plugin ``transfer_learning_imagenet.py``, ``--train_param last_fc_only``): the
model retargeted with every layer but the head at multiplier 0, Batch Normalization left on batch statistics, the
random training augmentation kept, then ``nnabla_cli train -c T -p T``: the whole backbone runs forward and backward
every epoch. nnc-tl's: ``retarget imagenet:ResNet-18 -c last-fc-only --fixed-crop`` (frozen Batch Normalization on its
running statistics, training on the validation centre crop) and ``nnc-tl train``: the frozen-prefix cache computes the
backbone once per image and the epochs train the head.

The model is a stand-in built from NNC's resnet-18 sample (``../shared/nnc-samples``; the published file needs the
network): the same network, so the same cost. Synthetic 32x32 images scaled to the network's 224x224, 10 classes,
NNC_TL_BENCH_IMAGENET_IMAGES training images (default 500), NNC_TL_BENCH_IMAGENET_EPOCHS epochs (default 10), batch 50.
Wall time of each whole command, monitors (every epoch, as the project says) included.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .measure import measured
from .standins import NNC_SAMPLES, imagenet_standin

BATCH = 50
PLUGIN_OVERLAY = "rules:\n  - all_but_last: 0\n    multiplier: 1\n  - all_but_last: 1\n    multiplier: 0\nfrozen_bn: batch\n"


def run(work: Path) -> dict:
    if not (NNC_SAMPLES / "resnet-18.prototxt").is_file():
        return {"skipped": f"{NNC_SAMPLES}/resnet-18.prototxt is absent (../shared not checked out)"}
    work = work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    images = int(os.environ.get("NNC_TL_BENCH_IMAGENET_IMAGES", "500"))
    epochs = int(os.environ.get("NNC_TL_BENCH_IMAGENET_EPOCHS", "10"))
    env = dict(os.environ, NNC_TL_MODEL_HOME=str(work / "models"), NNC_TL_CACHE=str(work / "cache"))
    (work / "models").mkdir()
    imagenet_standin("resnet-18", work / "models" / "Resnet-18.nnp")
    cli = [sys.executable, "-m", "nnc_tools.cli"]
    per_class = max(2, round(images / 8))  # 80 % of it lands in training.csv
    measured(cli + ["dataset", "cifar100-aquatic", "--synthetic", "--synthetic-per-class", str(per_class), "-o",
                    str(work / "data")], env=env)
    train_csv, val_csv = work / "data" / "training.csv", work / "data" / "validation.csv"
    rows = sum(1 for _ in open(train_csv)) - 1
    (work / "plugin.yaml").write_text(PLUGIN_OVERLAY)
    common = ["--train-csv", str(train_csv), "--val-csv", str(val_csv), "--epochs", str(epochs), "--batch-size", str(BATCH)]
    measured(cli + ["retarget", "imagenet:ResNet-18", "-o", str(work / "plugin.nnp"), "-c", str(work / "plugin.yaml")]
             + common, env=env)
    measured(cli + ["retarget", "imagenet:ResNet-18", "-o", str(work / "ours.nnp"), "-c", "last-fc-only", "--fixed-crop"]
             + common, env=env)
    exe = str(Path(sys.executable).with_name("nnabla_cli"))
    (work / "plugin").mkdir()
    _, plugin_wall, plugin_rss = measured([exe, "train", "-c", str(work / "plugin.nnp"), "-p", str(work / "plugin.nnp"),
                                           "-o", str(work / "plugin")], cwd=work, env=env)
    _, ours_wall, ours_rss = measured(cli + ["train", str(work / "ours.nnp"), "-o", str(work / "ours")], env=env)
    return {"model": "ResNet-18 (stand-in from NNC's resnet-18 sample)", "training_images": rows, "epochs": epochs,
            "batch_size": BATCH, "plugin_wall_s": round(plugin_wall, 1), "plugin_peak_rss_mb": plugin_rss,
            "nnc_tl_wall_s": round(ours_wall, 1), "nnc_tl_peak_rss_mb": ours_rss,
            "ratio": round(plugin_wall / ours_wall, 1)}


def table(results: dict) -> str:
    if "skipped" in results:
        return f"ImageNet transfer: skipped ({results['skipped']})"
    return "\n".join([
        "| ImageNet transfer, last layer only | wall (s) | peak RSS (MB) |", "|---|---:|---:|",
        f"| NNC plugin's recipe: nnabla_cli train, backbone forward and backward every epoch | {results['plugin_wall_s']} | "
        f"{results['plugin_peak_rss_mb']} |",
        f"| nnc-tl train, frozen backbone computed once per image | {results['nnc_tl_wall_s']} | {results['nnc_tl_peak_rss_mb']} |",
        "", f"{results['model']}, {results['training_images']} training images, {results['epochs']} epochs, batch "
        f"{results['batch_size']}: nnc-tl is **{results['ratio']}×** faster than the plugin's recipe."])
