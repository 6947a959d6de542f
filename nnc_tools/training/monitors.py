"""Monitors as ``nnabla_cli`` evaluates them (the mean of the monitor variable over a dataset), and the frozen-prefix
features that let them run only the rest of the network."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import nnabla as nn
import numpy as np

from ..data.decoded import Dataset
from ..formats.functions import CLASS_SCORE_LOSSES
from .frozen_cache import FeatureCache, detach
from .graphs import feed, padded
from .parallel import DataParallel
from .records import EpochRecord

log = logging.getLogger(__name__)


def evaluate_monitor(monitor, dataset: Dataset, batch_size: int, workers: int = 1,
                     cached=None) -> Tuple[float, Optional[np.ndarray]]:
    """Mean of the monitor variable over the dataset (``nnabla_cli``'s monitor value) and the class scores, if any;
    with ``workers`` > 1 each batch is split over that many threads. ``cached``: (the monitor graph's cut variable, made a
    leaf, and the dataset's frozen-prefix features), so that only the rest of the network runs."""
    total, count = 0.0, 0
    scores = []
    score_var = score_variable(monitor)
    outputs = [var.variable_instance for var in monitor.monitor_variables] + ([score_var] if score_var is not None else [])
    parallel = DataParallel(outputs, nn.get_parameters(grad_only=False), workers, batch_size) if workers > 1 else None
    skip = image_keys(dataset) if cached is not None else ()
    for start in range(0, dataset.size, batch_size):
        idx = np.arange(start, min(start + batch_size, dataset.size))
        rows = padded(idx, batch_size)
        if cached is not None:
            cached[0].d = cached[1].values[rows]
        feed(monitor.dataset_assign, dataset.batch(rows, skip), skip)
        if parallel is not None:
            values = parallel.forward()
        else:
            monitor.target.forward(clear_buffer=False)
            values = [v.d for v in outputs]
        n = len(idx)
        for v in values[: len(monitor.monitor_variables)]:
            if v.size % batch_size == 0 and v.size:  # per sample (NNC's loss layers): the real rows only
                total += float(v.reshape(batch_size, -1)[:n].mean(axis=1).sum())
            else:  # already reduced (``F.mean(...)``, as NNabla scripts write it): the batch's mean, for its rows
                total += float(np.mean(v)) * n
        count += n
        if score_var is not None:
            scores.append(values[-1].reshape(batch_size, -1)[:n].copy())
    if parallel is not None:
        parallel.close()
    return total / max(count, 1), (np.concatenate(scores) if scores else None)


def score_variable(monitor) -> Optional[nn.Variable]:
    """The class scores feeding the monitored loss (the Softmax before CategoricalCrossEntropy), if there is one."""
    for var in monitor.monitor_variables:
        parent = var.variable_instance.parent
        if parent is not None and parent.info.type_name in CLASS_SCORE_LOSSES and parent.inputs:
            return parent.inputs[0]
    return None


def image_keys(dataset: Dataset) -> set:
    """The dataset's image arrays: what a network cut after its frozen prefix no longer reads."""
    return {name for name in dataset.arrays if dataset.arrays[name].ndim >= 3}


def label_key(dataset: Dataset) -> str:
    return "y" if "y" in dataset.arrays else list(dataset.arrays)[-1]


def computed_features(cut: nn.Variable, assign, dataset: Dataset, batch_size: int, workers: int, budget: int,
                      folder: Path) -> FeatureCache:
    """The cut variable's values for every row of the dataset, the prefix run once (over the workers, if several)."""
    if cut.parent is None:  # a cut graph would give the cut's current values for every batch
        raise RuntimeError("the frozen prefix is already cut off from this graph: compute its features before detach()")
    features = FeatureCache(cut, dataset.size, budget, folder)
    prefix = DataParallel([cut], nn.get_parameters(grad_only=False), workers, batch_size) if workers > 1 else None

    def one_graph() -> np.ndarray:
        cut.forward(clear_buffer=True)
        return cut.d

    features.fill(lambda b: feed(assign, b), (lambda: prefix.forward()[0]) if prefix is not None else one_graph, dataset,
                  batch_size)
    if prefix is not None:
        prefix.close()
    return features


def monitor_features(monitor, dataset: Dataset, cut: str, known: Dict[str, FeatureCache], batch_size: int, workers: int,
                     budget: int, folder: Path) -> Tuple[nn.Variable, FeatureCache]:
    """The monitor graph's cut (still in the graph: the caller makes it a leaf) and the dataset's features: the training
    cache for the training set, else computed once through the monitor's own prefix and kept for later epochs."""
    var = monitor.network.variables[cut].variable_instance
    if dataset.name not in known:
        log.info(f"frozen-prefix cache: also for the monitors on {dataset.name} ({dataset.size} images)")
        known[dataset.name] = computed_features(var, monitor.dataset_assign, dataset, batch_size, workers, budget,
                                                folder / dataset.name)
    return var, known[dataset.name]


def due_monitors(monitors: Dict, datasets: Dict[str, Dataset], train_set: Dataset, epoch: int, interval: int,
                 epochs: int) -> Dict[str, Tuple]:
    """The monitors due at ``epoch``, like nnabla_cli: the training-set one every ``interval`` epochs (and at the end),
    the others every epoch; name -> (monitor, its dataset, whether it reads the training set)."""
    due = {}
    for name, monitor in monitors.items():
        dataset = datasets[monitor.proto.dataset_name[0]]
        on_training_set = dataset is train_set or name.startswith("train")
        if not (on_training_set and epoch % interval and epoch != epochs):
            due[name] = (monitor, dataset, on_training_set)
    return due


def record_monitors(due: Dict[str, Tuple], record: EpochRecord, cuts: Dict[str, Optional[str]],
                    known: Dict[str, FeatureCache], batch_size: int, workers: int, budget: int, cache_dir: Path) -> None:
    """Run the due monitors (through the frozen prefix's cached features where ``cuts`` has a cut for one) and put their
    values, and the validation accuracy, into ``record``."""
    cached = {}  # every monitor's features first: monitors may share a graph, and cutting it for one cuts it for all
    for name, (monitor, dataset, _) in due.items():
        if cuts.get(name) is not None:
            cached[name] = monitor_features(monitor, dataset, cuts[name], known, batch_size, workers, budget, cache_dir)
    for name, (monitor, dataset, on_training_set) in due.items():
        if name in cached:
            detach(cached[name][0])
        value, scores = evaluate_monitor(monitor, dataset, batch_size, workers, cached.get(name))
        if on_training_set:
            record.train_error = value
        else:
            record.valid_error = value
            if scores is not None:
                labels = dataset.arrays[label_key(dataset)].reshape(-1)
                record.valid_accuracy = float(np.mean(scores.argmax(axis=1) == labels))
