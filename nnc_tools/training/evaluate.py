"""`nnc-tl evaluate`: accuracy, per-class precision/recall and the confusion matrix of a trained project on a dataset CSV."""

from __future__ import annotations

import contextlib
import csv
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

import nnabla as nn
import numpy as np

from ..data.decoded import load_dataset
from ..errors import NncToolsError, about
from ..fileio import PathLike, atomic_output
from ..formats.nnc_csv import label_names, read_header_and_count
from ..formats.nnp import load_project, project_file
from ..formats.schema import executor_classes, network_of
from ..project.heads import training_class_names
from .checks import check_columns, check_header_classes
from .engine import nnabla_load
from .plots import plot_confusion_matrix
from .records import SUMMARY, Evaluation, read_summary, write_evaluation


def predict(project: PathLike, dataset, batch_size: int = 64, executor: Optional[str] = None) -> np.ndarray:
    """Class scores of every row, from the project's executor network (NNC's ``MainRuntime``), loaded by NNabla."""
    info = nnabla_load([str(project)], prepare_data_iterator=False, batch_size=batch_size)
    if not info.executors:
        raise NncToolsError(project, "has no executor to evaluate with")
    name = executor or next(iter(info.executors))
    ex = info.executors[name]
    outputs = list(ex.output_assign.items()) if hasattr(ex, "output_assign") else []
    # the output a loss compared with the labels (NNC names it y'), not the first of several (elman_net_with_attention
    # lists its hidden states and attention first)
    compared = [v for v, (_, data) in outputs if data == "y'"] + [v for v, (_, data) in outputs if data.endswith("'")]
    out = (compared or [v for v, _ in outputs] or [None])[0]
    out = out.variable_instance if out is not None else None
    if out is None:
        raise NncToolsError(project, f"executor {name} has no output variable")
    scores = []
    for start in range(0, dataset.size, batch_size):
        idx = np.arange(start, min(start + batch_size, dataset.size))
        full = np.resize(idx, batch_size)
        batch = dataset.batch(full)
        for var, name in ex.dataset_assign.items():
            v = var.variable_instance
            v.d = batch[name].reshape(v.shape)
        out.forward(clear_buffer=True)
        scores.append(out.d.reshape(batch_size, -1)[: len(idx)].copy())
    return np.concatenate(scores)


def yes_or_no(proto, scores: np.ndarray) -> np.ndarray:
    """One output per row is a yes/no classifier's (NNC's binary samples: a Sigmoid before BinaryCrossEntropy, or
    the logit SigmoidCrossEntropy reads): two class scores, class 1 where it passes 0.5 (a logit: 0)."""
    if scores.ndim != 2 or scores.shape[1] != 1:
        return scores
    outputs = {v.variable_name for e in proto.executor[:1] for v in e.output_variable}
    logit = any(f.type == "SigmoidCrossEntropy" and f.input[:1] and f.input[0] in outputs
                for n in proto.network for f in n.function)
    margin = scores[:, 0] - (0.0 if logit else 0.5)
    return np.stack([-margin, margin], axis=1)


def _check_executor_columns(proto, dataset, project: Path) -> None:
    """What the executor's network reads from the CSV is there and of its input's shape, before anything runs."""
    if not proto.executor:
        return
    ex = proto.executor[0]
    network = network_of(proto, ex.network_name)
    if network is None:
        return
    shapes = {v.name: list(v.shape.dim) for v in network.variable}
    try:
        check_columns(dataset, {dv.variable_name: dv.data_name for dv in ex.data_variable}, shapes, network.name)
    except NncToolsError as e:
        raise about(project, e) from None


def trained_class_names(proto, project: Path) -> List[str]:
    """The classes the project was trained on, from its training CSV's header: its dataset URI resolved as the
    project's, or, for a ``results.nnp`` in an ``nnc-tl train`` result folder, as the project that run trained."""
    training = [d.uri for d in proto.dataset if not proto.optimizer or d.name in proto.optimizer[0].dataset_name]
    if not training:
        return []
    names = training_class_names(training[0], project)
    if not names and (project.parent / SUMMARY).is_file():
        names = training_class_names(training[0], read_summary(project.parent).project)
    return names


def _check_class_names(proto, project: Path, csv_path: Path, given: List[str]) -> None:
    """A CSV whose header names (``given``) are other classes than the project was trained on, as many (in another
    order too), is refused: each row would be scored against another class's output."""
    trained = trained_class_names(proto, project)
    if trained and given and len(trained) == len(given) and trained != given:  # another count: check_header_classes
        shown = [", ".join(n[:4]) + (", ..." if len(n) > 4 else "") for n in (given, trained)]
        raise NncToolsError(csv_path, f"its header names the classes {shown[0]}; {project.name} was trained on "
                            f"{shown[1]}: a dataset for another network?")


def evaluate(project: PathLike, csv_path: PathLike, outdir: Optional[PathLike] = None, batch_size: int = 64,
             cache: Optional[PathLike] = None) -> Evaluation:
    """Accuracy and per-class table; with ``outdir``: ``confusion_matrix.csv``/``.png`` and ``evaluation.json`` there.
    An output folder this call made is removed again when the input turns out wrong."""
    outdir = Path(outdir) if outdir is not None else None
    created = outdir is not None and not outdir.exists()
    try:
        with contextlib.ExitStack() as stack:
            if cache is None:  # NNabla's CSV iterator cache: nothing beside the user's data or in a folder not asked for
                cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="nnc-tl-evaluate-"))
            return _evaluate(project_file(project), Path(csv_path), outdir, batch_size, cache)
    except NncToolsError:
        if created:
            shutil.rmtree(outdir, ignore_errors=True)
        raise


def _evaluate(project: Path, csv_path: Path, outdir: Optional[Path], batch_size: int,
              cache: Optional[PathLike]) -> Evaluation:
    proto = load_project(project).proto
    names = label_names(read_header_and_count(csv_path)[0])  # the header read once (the count reads every row)
    _check_class_names(proto, project, csv_path, names)
    check_header_classes(csv_path, names, executor_classes(proto), project.name)
    normalize = not proto.executor[0].no_image_normalization if proto.executor else True
    dataset = load_dataset(csv_path, Path(cache), name="evaluate", normalize=normalize)
    if "y" not in dataset.arrays:
        raise NncToolsError(csv_path, "has no label column y")
    raw = dataset.arrays["y"].reshape(-1)
    bad = ~(np.isfinite(raw) & (raw == np.round(raw)) & (raw >= 0))
    if bad.any():  # a -1 would count as the last class
        raise NncToolsError(csv_path, f"label {raw[bad][0]:g} in row {int(np.flatnonzero(bad)[0]) + 1} is not a class index")
    labels = raw.astype(np.int64)
    _check_executor_columns(proto, dataset, project)
    nn.clear_parameters()
    scores = yes_or_no(proto, predict(project, dataset, batch_size))
    predicted = scores.argmax(axis=1)
    if len(labels) and labels.max() >= scores.shape[1]:
        row = int(np.flatnonzero(labels >= scores.shape[1])[0])
        raise NncToolsError(csv_path, f"label {labels[row]} in row {row + 1} is past the {scores.shape[1]} classes "
                            f"{project.name} scores")
    n = scores.shape[1]
    classes = dataset.classes if len(dataset.classes) == n else [str(i) for i in range(n)]
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = []
    for k, name in enumerate(classes):
        tp = int(matrix[k, k])
        precision = tp / matrix[:, k].sum() if matrix[:, k].sum() else 0.0
        recall = tp / matrix[k, :].sum() if matrix[k, :].sum() else 0.0
        per_class.append({"class": name, "precision": round(float(precision), 4), "recall": round(float(recall), 4),
                          "support": int(matrix[k, :].sum())})
    result = Evaluation(float(np.mean(predicted == labels)), int(len(labels)), str(project), str(csv_path), classes,
                        per_class, matrix.tolist())
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        with atomic_output(outdir / "confusion_matrix.csv") as temp, open(temp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["true \\ predicted"] + classes)
            for name, row in zip(classes, matrix):
                writer.writerow([name] + [int(v) for v in row])
        plot_confusion_matrix(matrix, classes, outdir / "confusion_matrix.png",
                              title=f"{csv_path.name}: accuracy {result.accuracy:.1%}")
        write_evaluation(outdir, result)
    return result


def format_evaluation(result: Evaluation) -> str:
    lines = [f"accuracy {result.accuracy:.4f} on {result.count} rows of {result.dataset}",
             f"{'class':<20} {'precision':>9} {'recall':>7} {'support':>8}"]
    for row in result.per_class:
        lines.append(f"{row['class']:<20} {row['precision']:>9.4f} {row['recall']:>7.4f} {row['support']:>8}")
    return "\n".join(lines)
