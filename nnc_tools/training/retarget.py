"""`nnc-tl retarget`: any trained classifier project pointed at a new dataset, what NNC users do by hand in the EDIT tab
("Open in EDIT Tab with Weight", change the last Affine's output, swap the dataset, freeze). The head found (``heads``)
and resized to the new class count and re-initialised with the project's own initializer; every other parameter copied
bit for bit; the datasets pointed at the new CSVs with ``iter_per_epoch`` filled in; the first image checked against the
network's input; an overlay applied as ``apply-freeze`` does; solver states that no longer fit dropped. Everything is
checked and built in memory, then written once."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import NncToolsError
from ..fileio import PathLike
from ..formats.naming import PROJECT_EXTS
from ..formats.nnc_csv import read_header_and_count
from ..formats.nnp import Project, load_project, save_project, solver_learning_rate
from ..formats.parameters import Parameter
from ..formats.schema import learning_rate_field
from ..project.export import dataset_uri, solver_proto
from ..project.freeze import apply_to_proto
from ..project.matching import Change, fractional
from ..project.overlay import load_overlay
from .heads import Head, class_count_for, find_head, fitting, resize_head

# NNabla's CSV loader: an image's channels by its PIL mode (it asserts they equal the network input's)
CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "P": 3, "RGB": 3, "YCbCr": 3, "RGBA": 4, "CMYK": 4}


@dataclass
class RetargetOptions:
    train_csv: PathLike
    val_csv: PathLike
    classes: Optional[int] = None
    head: Optional[str] = None
    overlay: Optional[PathLike] = None
    reset_head: bool = False
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    solver: Optional[str] = None
    lr: Optional[float] = None
    seed: int = 0
    weights: Optional[PathLike] = None  # parameters from another file (a text project's, or to override the project's)
    scratch: bool = False  # every parameter drawn anew: the same network from scratch
    monitor_interval: Optional[int] = None  # the training-set monitor's, in epochs


@dataclass
class RetargetResult:
    target: Path
    head: Head
    classes: int
    classes_from: str
    reinitialised: List[str]
    copied: int
    networks: List[str]  # where the head was resized
    datasets: Dict[str, str]
    dropped: List[str] = field(default_factory=list)  # solver-state members left out
    changes: List[Change] = field(default_factory=list)
    written: List[Path] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def retarget(source: PathLike, target: PathLike, options: RetargetOptions) -> RetargetResult:
    """Write ``target``: ``source`` retargeted as the module docstring says; nothing is written when anything is wrong."""
    source, target = Path(source), Path(target)
    if source.suffix.lower() == ".sdcproj" or target.suffix.lower() == ".sdcproj":
        if source.suffix.lower() != target.suffix.lower():
            raise NncToolsError(target, "an .sdcproj is retargeted into an .sdcproj (NNC's own format, edited); from an NNabla "
                                "project write .nnp or .nntxt, which NNC imports")
        from .retarget_sdcproj import retarget_sdcproj

        return retarget_sdcproj(source, target, options)
    if target.suffix.lower() not in PROJECT_EXTS:
        raise NncToolsError(target, f"retarget writes {', '.join(PROJECT_EXTS)} or, from an .sdcproj, .sdcproj")
    project = load_project(source, [options.weights] if options.weights else ())
    proto = project.proto
    if not proto.optimizer:
        raise NncToolsError(source, "has no optimizer: not a training project")
    classes, classes_from = class_count_for(options.classes, options.train_csv)
    head = find_head(proto, source, options.head)
    params = OrderedDict(project.parameters)
    missing = [p for p in head.parameters if p not in params]
    if len(params) == 0 or missing:
        raise NncToolsError(source, "holds no trained parameters" if not params else f"has no values for {', '.join(missing)}"
                            " (pass the parameter file with --weights)")
    classes = fitting(head, classes, options.train_csv)
    networks, reinitialised = [], []
    if classes != head.classes or options.reset_head:
        networks = resize_head(proto, head, classes, source)
        reinitialised = _initialise_head(proto, head, params, options.seed)
    if options.scratch:
        reinitialise_all(proto, params, options.seed)
        reinitialised = list(params)
    datasets = _point_datasets(proto, target, options)
    _check_first_image(proto, Path(options.train_csv), source)
    _solver(proto, options)
    changes = apply_to_proto(proto, load_overlay(options.overlay), target) if options.overlay else []
    dropped = [m.name for m in project.nnp_members if m.name.lower().endswith(".optimizer")]
    for optimizer in proto.optimizer:
        optimizer.solver.states.clear()
    out = Project(proto, params)  # a new file: network, parameters; solver states left out
    result = RetargetResult(target, head, classes, classes_from, reinitialised, len(params) - len(reinitialised), networks,
                            datasets, dropped, changes)
    result.written = save_project(out, target, inputs=[source] + ([options.weights] if options.weights else []))
    odd = fractional(changes)
    if odd:
        result.warnings.append(f"{len(odd)} multipliers other than 0 or 1: NNC and nnabla_cli train every non-zero "
                               "multiplier at the full rate; nnc-tl train applies them exactly")
    return result


def _initialise_head(proto, head: Head, params, seed: int) -> List[str]:
    """The head's parameters drawn anew (``initial_values``)."""
    rng = np.random.RandomState(seed)
    variables = {v.name: v for n in proto.network for v in n.variable if v.type == "Parameter"}
    for name in head.parameters:
        params[name] = initial_values(variables[name], params[name], rng)
    return list(head.parameters)


def reinitialise_all(proto, params, seed: int) -> None:
    """Every parameter drawn anew, as the network would start from scratch (the scratch arm of an experiment)."""
    rng = np.random.RandomState(seed)
    variables = {v.name: v for n in proto.network for v in n.variable if v.type == "Parameter"}
    for name in list(params):
        if name in variables:
            params[name] = initial_values(variables[name], params[name], rng)


def initial_values(variable, old: Parameter, rng) -> Parameter:
    """A parameter drawn with the project's initializer for it (NNabla's own mapping of the ``initializer`` field);
    where the project names none, NNabla's parametric functions' defaults: Glorot-uniform weights, zero biases, BN's
    beta and mean 0, gamma and var 1."""
    from nnabla.core.graph_def import _create_initializer
    from nnabla.initializer import ConstantInitializer, UniformInitializer, calc_uniform_lim_glorot

    shape = tuple(int(d) for d in variable.shape.dim)
    initializer = _create_initializer(variable, rng) if variable.initializer.type else None
    last = variable.name.rsplit("/", 1)[-1]
    if initializer is None and len(shape) >= 2:
        fan_in, fan_out = (shape[0], int(np.prod(shape[1:]))) if len(shape) == 2 else (int(np.prod(shape[1:])), shape[0])
        initializer = UniformInitializer(calc_uniform_lim_glorot(fan_in, fan_out), rng=rng)
    elif initializer is None:
        initializer = ConstantInitializer(1 if last in ("gamma", "var") else 0)
    return Parameter(old.name, np.asarray(initializer(shape), dtype=old.data.dtype), old.need_grad)


def _point_datasets(proto, target: Path, options: RetargetOptions) -> Dict[str, str]:
    """The optimizers' datasets on the training CSV, every other (validation, monitors) on the validation CSV; batch
    size, epochs and ``iter_per_epoch`` (one pass over the training CSV) set."""
    training = {name for o in proto.optimizer for name in o.dataset_name}
    batch = options.batch_size
    if batch is not None:
        _set_batch_size(proto, batch)
    uris = {}
    for d in proto.dataset:
        csv = options.train_csv if d.name in training else options.val_csv
        read_header_and_count(csv)
        d.uri = dataset_uri(csv, target)
        if batch is not None:
            d.batch_size = batch
        uris[d.name] = d.uri
    rows = read_header_and_count(options.train_csv)[1]
    size = batch or next((d.batch_size for d in proto.dataset if d.name in training), 0) or 64
    proto.training_config.iter_per_epoch = max(1, rows // size)  # as export writes it and nnc-tl train counts it
    if options.epochs is not None:
        proto.training_config.max_epoch = options.epochs
    if options.monitor_interval is not None:
        proto.training_config.monitor_interval = options.monitor_interval
    return uris


def _set_batch_size(proto, batch: int) -> None:
    for network in proto.network:
        old = network.batch_size
        network.batch_size = batch
        for v in network.variable:
            if v.type != "Parameter" and v.shape.dim and v.shape.dim[0] == old:
                v.shape.dim[0] = batch


def _check_first_image(proto, csv: Path, where: Path) -> None:
    """The training CSV's first image against the optimizer network's input (channels, height, width)."""
    optimizer = proto.optimizer[0]
    network = next((n for n in proto.network if n.name == optimizer.network_name), None)
    data = {dv.data_name: dv.variable_name for dv in optimizer.data_variable}
    shapes = {v.name: list(v.shape.dim) for v in network.variable} if network is not None else {}
    wanted = shapes.get(data.get("x"))
    if wanted and len(wanted) == 4:
        check_first_image(csv, wanted[1:], where)


def check_first_image(csv: Path, wanted, where: Path) -> None:
    """The CSV's first image (column x) is ``wanted`` (channels, height, width), as NNabla's CSV loader needs it (it
    asserts the channels and feeds the size as it is); one line naming the image and both shapes otherwise. Rows that
    are not images (``.npy``, ``.csv``) are not checked."""
    from PIL import Image, UnidentifiedImageError

    header, rows = read_header_and_count(csv)
    column = next((k for k, cell in enumerate(header) if cell.partition(":")[0].split("__")[0] == "x"), None)
    if column is None or rows == 0:
        return
    import csv as csv_module

    with open(csv, newline="", encoding="utf-8-sig") as f:
        row = next(r for i, r in enumerate(csv_module.reader(f)) if i > 0 and r)
    image = (csv.parent / row[column].replace("\\", "/")) if column < len(row) else None
    if image is None or image.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"):
        return
    try:
        with Image.open(image) as img:
            got = [CHANNELS.get(img.mode, len(img.getbands())), img.height, img.width]
    except (OSError, UnidentifiedImageError) as e:
        raise NncToolsError(image, f"the training CSV's first image cannot be read ({e})") from None
    if got != list(wanted):
        raise NncToolsError(image, f"is {'x'.join(map(str, got))} (channels x height x width); {where.name}'s input is "
                            f"{'x'.join(map(str, wanted))}")


def _solver(proto, options: RetargetOptions) -> None:
    """``--solver`` replaces each optimizer's solver (its multipliers kept), ``--lr`` sets its learning rate."""
    for optimizer in proto.optimizer:
        if options.solver is not None:
            lr = options.lr if options.lr is not None else solver_learning_rate(optimizer.solver) or 0.001
            optimizer.solver.CopyFrom(solver_proto(options.solver, lr))
        elif options.lr is not None:
            which = optimizer.solver.WhichOneof("parameter")
            param = getattr(optimizer.solver, which) if which else None
            if param is None or learning_rate_field(param) is None:
                raise NncToolsError(None, f"--lr: the project's {optimizer.solver.type or 'solver'} has no learning rate to set")
            setattr(param, learning_rate_field(param), options.lr)
