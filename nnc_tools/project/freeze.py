"""Freeze overlays: ordered rules that set learning-rate multipliers, applied to NNabla projects and NNC ``.sdcproj`` files.

An overlay names layers as NNC does (``Convolution_3``; inside a Unit also ``VGG11/Convolution_3``) or parameters by
the name NNC's converter gives them (``Convolution_3/conv/W``, ``Convolution_2{RepeatStart}/conv/W``). Rules apply top to
bottom; the last rule that matches a parameter sets its multiplier (``matching``).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import NncToolsError, first_few
from ..fileio import PathLike, atomic_outputs, same_file
from ..formats.naming import PROJECT_EXTS, SDCPROJ_EXT
from ..formats.nnc_graph import ParameterSite, expand, parameters
from ..formats.nnp_zip import CopyAhead, open_nnp
from ..formats.schema import network_of
from ..formats.sdcproj import Layer, SdcProject, format_multiplier, load_sdcproj
from ..formats.solver_states import prune_text_states, pruned_state_members
from .matching import Change, fractional, resolve, select_optimizers
from .nnc_weights import WeightAssignment, assign_weights, refuse_frozen_without_weights, write_references
from .overlay import Overlay, find_overlay, load_overlay
from .views import NetworkView, view_of

# ---------------------------------------------------------------------------------------------------- NNabla projects


def proto_view(proto, optimizer) -> NetworkView:
    """Slots of an optimizer's network, in function order; parameters it lists but its network lacks come last."""
    network = network_of(proto, optimizer.network_name)
    functions = []
    if network is not None:
        parameters = {v.name for v in network.variable if v.type == "Parameter"}
        functions = [(f.name, [name for name in f.input if name in parameters]) for f in network.function]
    prefix = network.name + "/" if network is not None else ""
    view = view_of(functions, prefix, [pv.variable_name for pv in optimizer.parameter_variable])
    view.current = {pv.variable_name: float(pv.learning_rate_multiplier) for pv in optimizer.parameter_variable}
    return view


def apply_to_proto(proto, overlay: Overlay, project_path: PathLike) -> List[Change]:
    """Set ``parameter_variable[].learning_rate_multiplier`` in the selected optimizers, adding missing entries."""
    selected = select_optimizers(overlay, [o.name for o in proto.optimizer], project_path)
    views = {o.name: proto_view(proto, o) for o in proto.optimizer if o.name in selected}
    chosen = resolve(overlay, views, project_path)
    changes: List[Change] = []
    for optimizer in proto.optimizer:
        if optimizer.name not in chosen:
            continue
        entries = {pv.variable_name: pv for pv in optimizer.parameter_variable}
        for parameter, new in chosen[optimizer.name].items():
            entry = entries.get(parameter)
            changes.append(Change(parameter, optimizer.name, None if entry is None else float(entry.learning_rate_multiplier), new))
            if entry is None:
                entry = optimizer.parameter_variable.add()
                entry.variable_name = parameter
                entries[parameter] = entry
            entry.learning_rate_multiplier = new
        if overlay.frozen_bn == "inference":
            changes += _proto_batch_stats(proto, optimizer, set(chosen[optimizer.name]))
    return changes


def _proto_batch_stats(proto, optimizer, touched: set) -> List[Change]:
    """``frozen_bn: inference``: each Batch Normalization of the optimizer's network whose beta or gamma the overlay
    set runs on running statistics (``batch_stat: false``) when both end frozen, on batch statistics otherwise."""
    network = network_of(proto, optimizer.network_name)
    trained = {pv.variable_name for pv in optimizer.parameter_variable if pv.learning_rate_multiplier > 0}
    changes = []
    for f in network.function if network is not None else ():
        if f.type != "BatchNormalization" or len(f.input) < 3 or not touched & {f.input[1], f.input[2]}:
            continue
        param = f.batch_normalization_param
        new = bool(trained & {f.input[1], f.input[2]})
        name = f.name.split("/", 1)[1] if f.name.startswith(("@" + network.name + "/", network.name + "/")) else f.name
        changes.append(Change(f"{name} batch_stat", optimizer.name, float(param.batch_stat), float(new), multiplier=False))
        param.batch_stat = new
    return changes


# ------------------------------------------------------------------------------------------------------------ .sdcproj


def apply_to_sdcproj(sdc: SdcProject, overlay: Overlay) -> List[Change]:
    """Set multipliers in the networks of the selected optimizers, Units expanded as NNC's converter expands them: each
    parameter's multiplier is written where NNC reads it (the outermost of the Unit's override, the layer's own property
    that exists; with none, on the outermost Unit calling it, or on the layer when no Unit does)."""
    optimizers = sdc.optimizers()
    if optimizers:
        selected = select_optimizers(overlay, [o["name"] for o in optimizers], sdc.path)
        owners: Dict[str, List[str]] = {}
        for o in optimizers:
            if o["name"] in selected:
                owners.setdefault(o["network"], []).append(o["name"])
    else:
        select_optimizers(overlay, [], sdc.path)
        owners = {net: ["-"] for net in sdc.network_names()}
    expanded = {net: expand(sdc, net) for net in owners if net in sdc.network_names()}
    views = {net: view_of([(f.name, [site.name for site in f.parameters]) for f in functions if f.is_function], "",
                          [site.name for f in functions if not f.is_function for site in f.parameters])
             for net, functions in expanded.items()}  # a WorkingMemory is a buffer, not in the network's order
    for net, functions in expanded.items():
        views[net].current = {name: site.multiplier() for name, site in parameters(functions).items()}
    chosen = resolve(overlay, views, sdc.path)
    multi = sdc.get("Global", "NumNetwork") is not None
    changes: List[Change] = []
    for net, functions in expanded.items():
        sites = parameters(functions)
        for layer, key, site, new in _property_writes(sites, chosen[net]):
            old = site.multiplier()
            target = f"{layer.network}:{layer.name} {key}" if multi else f"{layer.name} {key}"
            changes.append(Change(target, ",".join(owners[net]), old, new))
            if old != new:
                sdc.set_property(layer, key, format_multiplier(new))
        if overlay.frozen_bn == "inference":
            changes += _sdcproj_batch_stats(sdc, functions, set(chosen[net]), ",".join(owners[net]), multi)
    return changes


def _sdcproj_batch_stats(sdc: SdcProject, functions, touched: set, optimizers: str, multi: bool) -> List[Change]:
    """``frozen_bn: inference`` in NNC's format: ``BatchStat=False`` on each Batch Normalization layer of the
    optimizer's network whose beta or gamma the overlay set and that ends with both frozen, ``True`` otherwise."""
    changes, seen = [], set()
    for f in functions:
        sites = {site.short: site for site in f.parameters}
        if f.layer.type != "BatchNormalization" or not {"beta", "gamma"} <= set(sites) or f.layer.section in seen:
            continue
        if not touched & {sites["beta"].name, sites["gamma"].name}:
            continue
        seen.add(f.layer.section)
        new = any(sites[p].multiplier() > 0 for p in ("beta", "gamma"))
        old = f.layer.properties.get("BatchStat", "True") != "False"
        target = f"{f.layer.network}:{f.layer.name} BatchStat" if multi else f"{f.layer.name} BatchStat"
        changes.append(Change(target, optimizers, float(old), float(new), multiplier=False))
        if old != new:
            sdc.set_property(f.layer, "BatchStat", str(new))
    return changes


def _property_writes(sites: Dict[str, ParameterSite], chosen: Dict[str, float]) -> List[Tuple[Layer, str, ParameterSite, float]]:
    """Where each chosen multiplier goes: (layer, property, a parameter it decides, value). The property NNC reads for
    it, unless that property also decides parameters that are to keep another value (a Unit network called twice with
    separate scopes, one of them frozen): then on the outermost Unit calling each chosen parameter."""
    by_property: Dict[Tuple[str, str], List[ParameterSite]] = {}
    for site in sites.values():
        layer, key = site.deciding() or site.keys[0]
        by_property.setdefault((layer.section, key), []).append(site)
    writes: Dict[Tuple[str, str], Tuple[Layer, str, ParameterSite, float]] = {}
    for group in by_property.values():
        wanted = [(site, chosen[site.name]) for site in group if site.name in chosen]
        if not wanted:
            continue
        values = {chosen.get(site.name, site.multiplier()) for site in group}
        for site, new in wanted[:1] if len(values) == 1 else wanted:
            layer, key = (site.deciding() or site.keys[0]) if len(values) == 1 else site.keys[0]
            writes[(layer.section, key)] = (layer, key, site, new)
    return list(writes.values())


# --------------------------------------------------------------------------------------------------------------- files


@dataclass
class FreezeResult:
    project: Path
    overlay: Path
    output: Optional[Path]  # None when nothing was written (dry run, or in place with nothing to change)
    changes: List[Change]
    warnings: List[str]
    weights: Optional[WeightAssignment] = None  # --weights: which parameters NNC loads from where
    references: List[Tuple[str, str, str]] = field(default_factory=list)  # (layer property, old, new) *.File lines


def apply_freeze(
    project: PathLike, overlay: Optional[PathLike] = None, output: Optional[PathLike] = None, dry_run: bool = False,
    weights: Optional[PathLike] = None, job_dir: Optional[PathLike] = None, allow_frozen_initial: bool = False,
) -> FreezeResult:
    """Apply an overlay to a project file (.nnp/.nntxt/.prototxt/.protobuf/.sdcproj), in place unless ``output`` is given.

    The whole overlay is checked against the project before anything is written. An ``.nnp`` gets only its network
    text rewritten; an ``.sdcproj`` only its ``*.LRateMultiplier`` property lines (and, with ``weights``, its ``*.File``
    references; a frozen parameter the weights do not give is refused unless ``allow_frozen_initial``).
    """
    project = Path(project)
    overlay_path = Path(overlay) if overlay is not None else find_overlay(project)
    assignment, references = None, []
    ext = project.suffix.lower()
    target = Path(output) if output is not None else project
    if target.suffix.lower() != ext:
        raise NncToolsError(target, f"output must have the input's extension '{ext}' (use nnc-tl convert to change format)")
    in_place = output is None or (target.exists() and same_file(target, project))
    # An .nnp keeps every member but its network as stored: the copy (a kernel copy as long as cp's) starts now and
    # runs while the overlay and the network are read and edited.
    with CopyAhead(project, target) if ext == ".nnp" and not dry_run else contextlib.nullcontext() as ahead:
        rules = load_overlay(overlay_path)
        if job_dir is not None and weights is None:
            raise NncToolsError(None, "--job-dir goes with --weights (it names where FROM.nnp is copied for NNC)")
        if weights is not None and ext != SDCPROJ_EXT:
            raise NncToolsError(weights, "--weights points an .sdcproj at NNC weights; for an NNabla project use "
                                "export --weights or retarget")
        if ext == SDCPROJ_EXT:
            sdc = load_sdcproj(project)
            changes = apply_to_sdcproj(sdc, rules)
            assignment = assign_weights(sdc, weights, target, job_dir) if weights is not None else None
            if assignment is not None and not allow_frozen_initial:
                refuse_frozen_without_weights(sdc, assignment, weights)
            references = write_references(sdc, assignment) if assignment is not None else []
            save = functools.partial(write_sdcproj, target, sdc, assignment)
        elif ext in PROJECT_EXTS:
            from ..formats.nnp import load_project, save_project  # protobuf, also while the copy runs

            loaded = load_project(project)
            changes = apply_to_proto(loaded.proto, rules, project)
            _prune_solver_states(loaded, project)
            save = functools.partial(save_project, loaded, target, replace_input=in_place, ahead=ahead)
        else:
            raise NncToolsError(project, f"unknown project file extension '{project.suffix}' "
                                f"(expected {', '.join(PROJECT_EXTS)}, .sdcproj)")
        write = not dry_run and not (in_place and not any(c.changed for c in changes) and not references)
        if write:
            save()
    warnings = []
    if rules.phases:
        warnings.append(f"{overlay_path} has {len(rules.phases)} phases: applied the first; nnc-tl train --phases runs them all")
    odd = fractional(changes)
    if odd:
        examples = first_few(f"{c.target} x{c.new:g}" for c in odd)
        warnings.append(
            f"{len(odd)} multipliers other than 0 or 1 ({examples}): NNC and nnabla_cli train every non-zero multiplier "
            "at the full rate; nnc-tl train applies them exactly"
        )
    return FreezeResult(project, overlay_path, target if write else None, changes, warnings, assignment, references)


def _prune_solver_states(loaded, path: Path) -> None:
    """Solver states of parameters the overlay froze taken out (NNabla's loader refuses them once they are out of the
    solver): the .nnp's state members rewritten, or the project text's ``solver.states``."""
    if path.suffix.lower() == ".nnp":
        with open_nnp(path) as zin:
            loaded.member_bytes = pruned_state_members(loaded.proto, zin)
    else:
        prune_text_states(loaded.proto)


def write_sdcproj(target: Path, sdc: SdcProject, assignment: Optional[WeightAssignment] = None) -> List[Path]:
    """The project, and with ``--weights`` the weights copied where NNC looks for them: both or neither."""
    copy = assignment is not None and assignment.copy_from is not None
    outputs = [target] + ([assignment.results] if copy else [])
    with atomic_outputs(outputs) as temps:
        temps[0].write_bytes(sdc.to_bytes())
        if copy:
            shutil.copyfile(assignment.copy_from, temps[1])
    return outputs
