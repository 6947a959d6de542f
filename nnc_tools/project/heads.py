"""A classifier's head in an NNabla project: the last parameterised layer whose output reaches the loss, found the same in
every network that has the loss and followed by its parameters into the others (the executor's ``MainRuntime``); and
the head resized to another number of classes, with every shape that follows from it."""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import NncToolsError
from ..fileio import PathLike
from ..formats.functions import CLASSIFIER_LOSSES, LOSS_FUNCTIONS, PER_OUTPUT_LOSSES, SCORE_READERS
from ..formats.naming import layer_of
from ..formats.nnc_csv import dataset_path, label_names, read_header_and_count
from ..formats.schema import nnabla_pb2

# Layers whose output count can be changed: Affine (the last axis of W) and Convolution (W's first axis, the maps).
HEAD_TYPES = ("Affine", "Convolution")


@dataclass
class Head:
    layer: str  # NNC's layer name (``Affine_3``)
    type: str
    weight: str  # the parameters' names
    bias: Optional[str]
    classes: int  # what it scores now
    why: str  # how it was found, for the user
    loss: Optional[str] = None  # the loss it feeds (None when named with --head in a network without one)

    @property
    def parameters(self) -> List[str]:
        return [self.weight] + ([self.bias] if self.bias else [])


class _Graph:
    """One network's functions by what they produce and read; its parameter variables."""

    def __init__(self, network: nnabla_pb2.Network):
        self.network = network
        self.parameters = {v.name for v in network.variable if v.type == "Parameter"}
        self.variables = {v.name: v for v in network.variable}
        self.producer = {o: f for f in network.function for o in f.output}
        self.readers = defaultdict(list)
        for f in network.function:
            for i in f.input:
                self.readers[i].append(f)

    def data_inputs(self, f) -> List[str]:
        return [i for i in f.input if i not in self.parameters]

    def parameter_inputs(self, f) -> List[str]:
        return [i for i in f.input if i in self.parameters]


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name.startswith("@") else name


def _head_of(f, graph: _Graph, why: str, where: PathLike, loss: Optional[str] = None) -> Head:
    params = graph.parameter_inputs(f)
    if f.type not in HEAD_TYPES:
        layer = layer_of(params[0]) if params else _short(f.name)
        raise NncToolsError(where, f"the last parameterised layer before the loss, {layer}, is a {f.type}: only an Affine or "
                            "Convolution head can be resized (name another layer with --head)")
    weight = f.input[1] if len(f.input) > 1 else None
    if weight not in graph.parameters:
        raise NncToolsError(where, f"{_short(f.name)}: its weight is not a parameter (a link into its W pin?); cannot resize it")
    bias = f.input[2] if len(f.input) > 2 and f.input[2] in graph.parameters else None
    dims = list(graph.variables[weight].shape.dim)
    if f.type == "Affine" and len(dims) != 2:
        raise NncToolsError(where, f"{layer_of(weight)}: an Affine with a {len(dims) - 1}-axis output; only one axis of classes "
                            "can be resized")
    classes = dims[-1] if f.type == "Affine" else dims[0]
    return Head(layer_of(weight), f.type, weight, bias, int(classes), why, loss)


def _from_loss(loss, graph: _Graph, where: PathLike) -> Head:
    """Walk back from a loss's first input through functions without parameters to the layer that has them."""
    variable = loss.input[0]
    path = []
    while True:
        f = graph.producer.get(variable)
        if f is None:
            raise NncToolsError(where, f"network {graph.network.name}: no parameterised layer feeds its {loss.type}")
        if graph.parameter_inputs(f):
            through = f" through {', '.join(path)}" if path else ""
            return _head_of(f, graph, f"its output reaches {graph.network.name}'s {loss.type}{through}", where, loss.type)
        inputs = graph.data_inputs(f)
        if len(inputs) != 1:
            raise NncToolsError(where, f"network {graph.network.name}: {_short(f.name)} ({f.type}) between the loss and the "
                                f"head joins {len(inputs)} inputs; name the head with --head")
        path.append(f.type)
        variable = inputs[0]


def find_head(proto: nnabla_pb2.NNablaProtoBuf, where: PathLike, named: Optional[str] = None) -> Head:
    """The classifier's head: ``named`` (a layer or function name), else the one every network's classifier loss reaches.
    Two different heads, or no loss and no name, are one line."""
    graphs = [_Graph(n) for n in proto.network]
    if named is not None:
        return _named_head(graphs, named, where)
    found: Dict[str, Head] = {}
    for graph in graphs:
        for f in graph.network.function:
            if f.type in CLASSIFIER_LOSSES:
                head = _from_loss(f, graph, where)
                found.setdefault(head.weight, head)
    if not found:
        losses = ", ".join(sorted(CLASSIFIER_LOSSES))
        raise NncToolsError(where, f"no classifier loss ({losses}) in any network: cannot tell the head; name it with --head")
    if len(found) > 1:
        raise NncToolsError(where, f"{len(found)} heads reach a loss ({', '.join(h.layer for h in found.values())}): choose "
                            "one with --head")
    return next(iter(found.values()))


def other_heads(proto: nnabla_pb2.NNablaProtoBuf, head: Head, where: PathLike) -> List[Head]:
    """The heads other than ``head`` whose output reaches a classifier loss (GoogLeNet's auxiliary classifiers): their
    losses read the same labels, so they take the same class count."""
    found: Dict[str, Head] = {}
    for graph in (_Graph(n) for n in proto.network):
        for f in graph.network.function:
            if f.type in CLASSIFIER_LOSSES:
                other = _from_loss(f, graph, where)
                if other.weight != head.weight:
                    found.setdefault(other.weight, other)
    return list(found.values())


def _named_head(graphs: Sequence[_Graph], named: str, where: PathLike) -> Head:
    names = set()
    for graph in graphs:
        for f in graph.network.function:
            params = graph.parameter_inputs(f)
            layers = {layer_of(p) for p in params} | {_short(f.name)}
            names.update(layers)
            if named in layers:
                if not params:
                    raise NncToolsError(where, f"--head {named}: a {f.type}, which has no parameters to resize")
                return _head_of(f, graph, "named with --head", where)
    close = difflib.get_close_matches(named, sorted(names), n=3, cutoff=0.4)
    raise NncToolsError(where, f"--head {named}: no such layer (closest: {', '.join(close) or 'none'})")


def _resize(dims, old: int, new: int, skip_first: bool, what: str, where: PathLike) -> bool:
    """The one axis of ``dims`` that holds ``old`` classes, set to ``new`` (the batch axis left alone); False when none does."""
    start = 1 if skip_first else 0
    axes = [k for k in range(start, len(dims)) if dims[k] == old]
    if len(axes) > 1:
        raise NncToolsError(where, f"{what}: shape {list(dims)} has {len(axes)} axes of size {old}; cannot tell the classes' one")
    if axes:
        dims[axes[0]] = new
    return bool(axes)


def resize_head(proto: nnabla_pb2.NNablaProtoBuf, head: Head, classes: int, where: PathLike) -> List[str]:
    """Set the head to ``classes`` outputs in every network that uses its parameters, and every shape after it up to the
    losses (their label input too where it is per class, as for BinaryCrossEntropy); returns the networks changed."""
    changed = []
    for network in proto.network:
        graph = _Graph(network)
        users = [f for f in network.function if head.weight in f.input]
        if not users:
            continue
        changed.append(network.name)
        weight = graph.variables[head.weight].shape.dim
        weight[-1 if head.type == "Affine" else 0] = classes
        if head.bias:
            graph.variables[head.bias].shape.dim[:] = [classes]
        for f in users:
            _resize_following(graph, f, head.classes, classes, where)
    return changed


def _resize_following(graph: _Graph, head_function, old: int, new: int, where: PathLike) -> None:
    """The head's output and what follows it without parameters, up to the losses."""
    queue, seen = [head_function], set()
    while queue:
        f = queue.pop()
        if f.name in seen:
            continue
        seen.add(f.name)
        if f.type in LOSS_FUNCTIONS:
            for label in f.input[1:] if f.type in CLASSIFIER_LOSSES else ():
                if label in graph.variables and label not in graph.producer:
                    _resize(graph.variables[label].shape.dim, old, new, True, f"{graph.network.name}'s {label}", where)
            continue
        if f is not head_function and graph.parameter_inputs(f):
            raise NncToolsError(where, f"network {graph.network.name}: {_short(f.name)} ({f.type}) has parameters and follows "
                                "the head; cannot resize past it (name another head with --head)")
        if f.type in SCORE_READERS:
            continue  # reads the scores, gives a value per sample
        if f is not head_function and len(graph.data_inputs(f)) > 1:
            raise NncToolsError(where, f"network {graph.network.name}: {_short(f.name)} ({f.type}) joins the head's output "
                                "with another: cannot follow the classes past it")
        if f.type == "Reshape":
            _resize(f.reshape_param.shape.dim, old, new, True, f"{_short(f.name)}'s shape", where)
        for out in f.output:
            dims = graph.variables[out].shape.dim if out in graph.variables else None
            if dims is not None and not _resize(dims, old, new, True, f"{graph.network.name}'s {out}", where):
                raise NncToolsError(where, f"network {graph.network.name}: {_short(f.name)} ({f.type}) turns the head's {old} "
                                    f"outputs into shape {list(dims)}: cannot follow the classes past it")
            queue.extend(graph.readers.get(out, []))


def output_count_for(head: Head, classes: int, csv: PathLike) -> int:
    """The head's output count for ``classes``: a Sigmoid head with one output (BinaryCrossEntropy, 0/1 labels) stays
    one output for two classes; a head whose loss takes 0/1 per output cannot take more class indices."""
    if head.loss not in PER_OUTPUT_LOSSES:
        return classes
    if head.classes == 1 and classes == 2:
        return 1
    if classes == head.classes:
        return classes
    outputs = f"{head.classes} output{'s' * (head.classes != 1)}"
    raise NncToolsError(csv, f"{classes} classes, but {head.layer} feeds a {head.loss} (a 0/1 label for each of its "
                        f"{outputs}), which class indices do not fit: retarget a Softmax classifier, or keep the labels binary")


def training_class_names(uri: str, project_path: PathLike) -> List[str]:
    """The class names the header of a project's training CSV gives (``y:label;airplane;…``), its URI resolved as the
    project's; none when the CSV is not there (a results.nnp moved away from its data) or names no classes."""
    try:
        path = dataset_path(uri, Path(project_path).resolve().parent)
        return label_names(read_header_and_count(path)[0]) if path.is_file() else []
    except NncToolsError:
        return []


def renamed_classes(before: List[str], csv: PathLike, classes: int) -> Optional[Tuple[List[str], List[str]]]:
    """(old names, new names) when the project was trained on other classes than the new training CSV names, at the
    same count: its head's weights score the old ones, so it must be drawn anew. None when either side names none."""
    after = label_names(read_header_and_count(csv)[0])
    if before and after and len(before) == len(after) == classes and before != after:
        return before, after
    return None
