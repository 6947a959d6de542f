"""`nnc-tl retarget`: any trained classifier project pointed at a new dataset, what NNC users do by hand in the EDIT tab
("Open in EDIT Tab with Weight", change the last Affine's output, swap the dataset, freeze). The head found (``heads``)
and resized to the new class count and re-initialised with the project's own initializer; every other parameter copied
bit for bit; the datasets pointed at the new CSVs with ``iter_per_epoch`` filled in; the first image checked against the
network's input; an overlay applied as ``apply-freeze`` does; solver states that no longer fit dropped. Everything is
checked and built in memory, then written once."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import List

from ..data.models import resolve_source
from ..errors import NncToolsError, first_few
from ..fileio import PathLike
from ..formats.naming import PROJECT_EXTS, SDCPROJ_EXT, is_statistic, repeat_expansions
from ..formats.nnc_csv import check_split_csvs, class_count_for
from ..formats.nnp import Project, load_project, multipliers, save_project
from ..formats.sdc_compile import name_datasets
from ..formats.sdcproj import load_sdcproj
from .freeze import apply_to_proto
from .heads import find_head, other_heads, output_count_for, renamed_classes, resize_head, training_class_names
from .image_inputs import fit_to_csvs, fixed_training_crop, set_input_size
from .matching import fractional
from .overlay import load_overlay
from .passes import check_input_image, point_datasets, reinitialise, set_solver
from .retarget_result import RetargetOptions, RetargetResult
from .retarget_sdcproj import retarget_sdcproj

__all__ = ["RetargetOptions", "RetargetResult", "retarget"]


def retarget(source: PathLike, target: PathLike, options: RetargetOptions) -> RetargetResult:
    """Write ``target``: ``source`` retargeted as the module docstring says; nothing is written when anything is wrong."""
    source, target = resolve_source(source), Path(target)
    if target.suffix.lower() == SDCPROJ_EXT:
        if source.suffix.lower() != SDCPROJ_EXT:
            raise NncToolsError(target, "an .sdcproj is written from an .sdcproj (NNC's own format, edited); from an NNabla "
                                "project write .nnp or .nntxt, which NNC imports")
        return retarget_sdcproj(source, target, options)
    # an .sdcproj into an NNabla project: read compiled as NNC's converter compiles it (formats.sdc_compile)
    if target.suffix.lower() not in PROJECT_EXTS:
        raise NncToolsError(target, f"retarget writes {', '.join(PROJECT_EXTS)} or, from an .sdcproj, .sdcproj")
    project = _load_source(source, options)
    proto = project.proto
    classes, classes_from = class_count_for(options.classes, options.train_csv)
    head = find_head(proto, source, options.head)
    params = OrderedDict(project.parameters)
    missing = [p for p in head.parameters if p not in params]
    untrained = source.suffix.lower() == SDCPROJ_EXT and not params  # NNC's project without --weights: from scratch
    if (len(params) == 0 or missing) and not (options.scratch or untrained):
        raise NncToolsError(source, "holds no trained parameters" if not params else f"has no values for {', '.join(missing)}"
                            " (pass the parameter file with --weights)")
    classes = output_count_for(head, classes, options.train_csv)
    training = next((d.uri for d in proto.dataset if d.name in proto.optimizer[0].dataset_name), "")
    renamed = renamed_classes(training_class_names(training, source), options.train_csv, head.classes) \
        if classes == head.classes else None
    networks, reinitialised = [], []
    extra = other_heads(proto, head, source) if options.head else []  # e.g. GoogLeNet's auxiliary classifiers
    if classes != head.classes or options.reset_head or renamed:
        networks = resize_head(proto, head, classes, source)
        for other in extra:
            resize_head(proto, other, classes, source)
        reinitialised = reinitialise(proto, params, options.seed, head.parameters + [p for o in extra for p in o.parameters])
    if options.scratch:
        reinitialised = reinitialise(proto, params, options.seed)
    check_split_csvs(options.train_csv, options.val_csv, [dv.data_name for dv in proto.optimizer[0].data_variable])
    fitted = _fit_images(proto, options, source)
    datasets = point_datasets(proto, target, options.train_csv, options.val_csv, batch_size=options.batch_size,
                              epochs=options.epochs, monitor_interval=options.monitor_interval)
    check_input_image(proto, Path(options.train_csv), source)
    set_solver(proto, options.solver, options.lr)
    changes = apply_to_proto(proto, load_overlay(options.overlay), target) if options.overlay else []
    left = left_to_initializer(proto, params)
    if not options.allow_frozen_initial:
        _refuse_frozen_left(proto, left, options.weights or source)
    dropped = [m.name for m in project.nnp_members if m.name.lower().endswith(".optimizer")]
    for optimizer in proto.optimizer:
        optimizer.solver.states.clear()
    out = Project(proto, params)  # a new file: network, parameters; solver states left out
    result = RetargetResult(target, head, classes, classes_from, networks, datasets, changes, reinitialised=reinitialised,
                            copied=len(params) - len(reinitialised), dropped=dropped, left=left, renamed=renamed,
                            fitted=fitted)
    result.written = save_project(out, target, inputs=[source] + ([options.weights] if options.weights else []))
    if untrained:
        result.warnings.append(f"{source.name} holds no weights (NNC keeps them in its results): every parameter starts "
                               "from its initializer; pass --weights results.nnp to start from NNC's trained ones")
    odd = fractional(changes)
    if odd:
        result.warnings.append(f"{len(odd)} multipliers other than 0 or 1: NNC and nnabla_cli train every non-zero "
                               "multiplier at the full rate; nnc-tl train applies them exactly")
    return result


def _fit_images(proto, options: RetargetOptions, source: Path) -> List[str]:
    """An image network's preprocessing fitted to the CSVs' images, ``--input-size`` and ``--fixed-crop`` (``image_inputs``)."""
    fitted = fit_to_csvs(proto, options.train_csv, options.val_csv)
    if options.input_size:
        fitted += set_input_size(proto, options.input_size, source)
    if options.fixed_crop:
        fitted += fixed_training_crop(proto) or ["--fixed-crop: the training network draws no random crop to fix"]
    return fitted


def _load_source(source: Path, options: RetargetOptions) -> Project:
    """The source project (an ``.sdcproj`` compiled as NNC's converter compiles it, with the datasets the converter
    leaves out for want of a URI named, to be pointed), with ``--weights``; one with no optimizer is refused."""
    project = load_project(source, [options.weights] if options.weights else ())
    if source.suffix.lower() == SDCPROJ_EXT:
        name_datasets(project.proto, load_sdcproj(source))
    if not project.proto.optimizer:
        raise NncToolsError(source, "has no optimizer: not a training project")
    return project


def left_to_initializer(proto, params) -> List[str]:
    """Parameters the networks declare that the project (and ``--weights``) give no values, under the project's name
    or, inside a Repeat block, the loader's per-repetition names: training draws them."""
    declared = dict.fromkeys(v.name for n in proto.network for v in n.variable if v.type == "Parameter")
    return [name for name in declared if name not in params and not repeat_expansions(name, params)]


def _refuse_frozen_left(proto, left: List[str], where: Path) -> None:
    """A parameter an optimizer freezes (multiplier 0; BN statistics aside) with no values would train frozen at random."""
    frozen = [n for n in left if not is_statistic(n) and any(multipliers(o).get(n, 1.0) == 0 for o in proto.optimizer)]
    if frozen:
        shown = first_few(frozen)
        raise NncToolsError(where, f"gives no values to {len(frozen)} parameters the project freezes ({shown}): they would "
                            "train frozen at their random initial values; pass --allow-frozen-initial to write it anyway")
