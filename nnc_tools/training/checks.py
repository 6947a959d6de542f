"""What is checked before a run trains on anything: each column's shape against the variable that reads it, and the
datasets' labels against the classes the network can score
(a label past them crashes NNabla's CategoricalCrossEntropy with "double free or corruption"; a header naming another
number of classes than the network scores trains silently on the wrong head)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable

import numpy as np

from ..data.decoded import Dataset
from ..errors import NncToolsError
from ..formats.functions import CLASS_SCORE_LOSSES
from ..formats.nnc_csv import label_names, read_header_and_count
from ..formats.schema import network_of


def _readers(proto, optimizer_proto, monitors: Iterable):
    """(network, dataset names, {variable: column}) of the optimizer and each monitor."""
    readers = [(optimizer_proto.network_name, optimizer_proto.dataset_name, optimizer_proto.data_variable)]
    readers += [(m.network_name, m.dataset_name, m.data_variable) for m in monitors]
    for network_name, dataset_names, data_variables in readers:
        network = network_of(proto, network_name)
        if network is not None:
            yield network, list(dataset_names), {dv.variable_name: dv.data_name for dv in data_variables}


def _score_classes(network) -> Dict[str, int]:
    """Label column variable -> the class count of the classifier loss that reads it (its score input's last axis)."""
    shapes = {v.name: list(v.shape.dim) for v in network.variable}
    return {f.input[1]: shapes.get(f.input[0], [0])[-1] for f in network.function
            if f.type in CLASS_SCORE_LOSSES and len(f.input) >= 2}


def check_headers(proto, optimizer_proto, monitors: Iterable, uris: Dict[str, Path]) -> None:
    """What the CSVs' headers alone tell, before any image is decoded (a million rows take a second): each has the
    columns its network reads, and names as many classes as the loss reading its labels scores."""
    for network, dataset_names, data_of in _readers(proto, optimizer_proto, monitors):
        classes = _score_classes(network)
        for name in dataset_names:
            if name not in uris:
                continue
            header, _ = read_header_and_count(uris[name])
            present = {cell.partition(":")[0].split("__")[0] for cell in header}
            for variable, data_name in data_of.items():
                if data_name not in present:
                    raise NncToolsError(None, f"{network.name}'s {variable} reads '{data_name}', which {uris[name]} has no "
                                        f"column for (its columns: {', '.join(sorted(present)) or 'none'})")
            names = label_names(header)
            for variable, count in classes.items():
                if variable in data_of:
                    check_header_classes(uris[name], names, count, f"{network.name}'s loss",
                                         f" (export the network with --classes {len(names)})")


def check_labels(proto, optimizer_proto, monitors: Iterable, datasets: Dict[str, Dataset]) -> None:
    """Every dataset the optimizer or a monitor reads: its columns fit the variables that read them, and its labels are
    whole numbers from 0 to the class count of the loss that reads them (the loss input's last axis); one line naming
    the CSV, the label and the network otherwise."""
    for network, dataset_names, data_of in _readers(proto, optimizer_proto, monitors):
        shapes = {v.name: list(v.shape.dim) for v in network.variable}
        for name in (n for n in dataset_names if n in datasets):
            check_columns(datasets[name], data_of, shapes, network.name)
            for variable, classes in _score_classes(network).items():
                if variable in data_of and classes > 0:
                    _check(datasets[name], data_of[variable], classes, f"{network.name}'s loss")


def _check(dataset: Dataset, key: str, classes: int, where: str) -> None:
    labels = dataset.arrays.get(key)
    if labels is None:
        return
    values = np.asarray(labels).reshape(-1)
    whole = np.isfinite(values) & (values == np.round(values)) & (values >= 0) & (values < classes)
    if not whole.all():
        bad = values[~whole][0]
        row = int(np.flatnonzero(~whole)[0]) + 1
        raise NncToolsError(dataset.uri, f"label {bad:g} in row {row} is not one of the {classes} classes of {where} "
                            f"(0 to {classes - 1}): a dataset for another network?")
    check_header_classes(dataset.uri, dataset.classes, classes, where, f" (export the network with --classes {len(dataset.classes)})")


def check_header_classes(uri, names, classes: int, where: str, hint: str = "") -> None:
    """The class names in a CSV's header (when it names them) are as many as the network scores."""
    if names and classes and len(names) != classes:
        raise NncToolsError(uri, f"its header names {len(names)} classes, {where} scores {classes}: "
                            f"a dataset for another network?{hint}")


def check_columns(dataset: Dataset, data_of: Dict[str, str], shapes: Dict[str, list], network: str) -> None:
    """Each column a network reads holds what its variable takes a sample (an image of its channels and size): NNabla
    would fail copying the batch in, or NNC's loader would have converted it."""
    for variable, data_name in data_of.items():
        array, shape = dataset.arrays.get(data_name), shapes.get(variable)
        if array is None:  # the project's fault, not the CSV's: the message names the project (train adds it)
            raise NncToolsError(None, f"{network}'s {variable} reads '{data_name}', which {dataset.uri} has no column for "
                                f"(its columns: {', '.join(dataset.arrays) or 'none'})")
        if not shape:
            continue
        want, got = [int(d) for d in shape[1:]], [int(d) for d in np.asarray(array).shape[1:]]
        if int(np.prod(want)) != int(np.prod(got)) and all(d > 0 for d in want):
            raise NncToolsError(dataset.uri, f"its {data_name} is {'x'.join(map(str, got)) or 'a number'} a row; "
                                f"{network}'s {variable} takes {'x'.join(map(str, want))}")


def check_datasets_named(proto, project_path: Path) -> None:
    """The optimizer and each monitor read a dataset the project has (NNC's converter writes none into a prototxt)."""
    known = {d.name for d in proto.dataset}
    for kind, item in [("optimizer", proto.optimizer[0])] + [("monitor", m) for m in proto.monitor]:
        missing = [n for n in item.dataset_name if n not in known]
        if not item.dataset_name or missing:
            what = f"dataset {missing[0]!r}, which it lacks" if missing else "no dataset"
            raise NncToolsError(project_path, f"its {kind} {item.name} reads {what}: point it at your CSVs first (nnc-tl "
                                "retarget PROJECT -o OUT.nnp --train-csv CSV --val-csv CSV)")


def check_schedules(proto, project_path: Path) -> None:
    """A Cosine or Polynomial schedule spans some iterations (NNabla divides by ``max_iter``; NNC's ImageNet projects
    leave it 0)."""
    for optimizer in proto.optimizer:
        kind = optimizer.solver.lr_scheduler_type
        param = {"Cosine": "cosine_scheduler_param", "Polynomial": "polynomial_scheduler_param"}.get(kind)
        if param and getattr(optimizer.solver, param).max_iter <= 0:
            raise NncToolsError(project_path, f"its optimizer {optimizer.name}'s {kind} learning-rate schedule has max_iter "
                                f"{getattr(optimizer.solver, param).max_iter}: set it to the run's iterations (nnc-tl "
                                "retarget sets it to epochs x iterations per epoch)")
