"""Freeze overlays: ordered rules that set learning-rate multipliers, applied to NNabla projects and NNC ``.sdcproj`` files.

An overlay names layers as NNC does (``Convolution_3``; ``Unit/Affine`` inside a unit) or parameters by full name
(``Convolution_3/conv/W``). Rules apply top to bottom; the last rule that matches a parameter sets its multiplier.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import NncToolsError
from ..fileio import PathLike, atomic_output, same_file
from ..formats.naming import PROJECT_EXTS, layer_of
from ..formats.nnp_zip import CopyAhead
from ..formats.sdcproj import SdcProject, load_sdcproj
from .overlay import Overlay, Rule, find_overlay, load_overlay


@dataclass
class Slot:
    """A parameter as the overlay sees it, in one network: full name, NNC layer name, last name component, position."""

    parameter: str
    layer: str
    short: str
    position: int


@dataclass
class NetworkView:
    """What rules match against in one network: parameter slots and the network order of every named layer/function."""

    slots: List[Slot]
    positions: Dict[str, int] = field(default_factory=dict)


@dataclass
class Change:
    """One multiplier the overlay sets: ``target`` (parameter, or layer property for .sdcproj), optimizers, old → new."""

    target: str
    optimizer: str
    old: Optional[float]
    new: float

    @property
    def changed(self) -> bool:
        return self.old is None or self.old != self.new


# ------------------------------------------------------------------------------------------------------------ matching


def _glob(pattern: str, slot: Slot) -> bool:
    if "/" in pattern:
        return fnmatch.fnmatchcase(slot.parameter, pattern) or fnmatch.fnmatchcase(slot.layer, pattern)
    return fnmatch.fnmatchcase(slot.layer, pattern)


def _up_to_position(name: str, view: NetworkView) -> Optional[int]:
    if name in view.positions:
        return view.positions[name]
    layer_positions = [s.position for s in view.slots if s.layer == name]
    return min(layer_positions) if layer_positions else None


def rule_matches(rule: Rule, slot: Slot, view: NetworkView) -> bool:
    if rule.params is not None and slot.short not in rule.params:
        return False
    if rule.match is not None:
        return _glob(rule.match, slot)
    limit = _up_to_position(rule.up_to, view)
    return limit is not None and slot.position <= limit


def resolve(overlay: Overlay, views: Dict[str, NetworkView], project_path: PathLike) -> Dict[str, Dict[str, float]]:
    """Multiplier per optimizer and parameter for every parameter some rule matches; every rule must match something."""
    result: Dict[str, Dict[str, float]] = {}
    used = [False] * len(overlay.rules)
    for optimizer, view in views.items():
        chosen: Dict[str, float] = {}
        for slot in view.slots:
            for i, rule in enumerate(overlay.rules):
                if rule_matches(rule, slot, view):
                    used[i] = True
                    chosen[slot.parameter] = rule.multiplier
        result[optimizer] = chosen
    for rule, was_used in zip(overlay.rules, used):
        if not was_used:
            raise NncToolsError(overlay.path, _no_match_message(rule, views, project_path))
    return result


def _no_match_message(rule: Rule, views: Dict[str, NetworkView], project_path: PathLike) -> str:
    names = set()
    for view in views.values():
        for slot in view.slots:
            if rule.params is None or slot.short in rule.params:
                names.update((slot.layer, slot.parameter))
        if rule.up_to is not None:
            names.update(view.positions)
    wanted = rule.match if rule.match is not None else rule.up_to
    close = difflib.get_close_matches(wanted, sorted(names), n=3, cutoff=0.5) or sorted(
        {s.layer for v in views.values() for s in v.slots}
    )[:3]
    kind = "match" if rule.match is not None else "up_to"
    params = f" with params {list(rule.params)}" if rule.params else ""
    return f"{rule.where}: {kind} '{wanted}'{params} matches nothing in {project_path} (closest: {', '.join(close) or 'none'})"


def select_optimizers(overlay: Overlay, available: Sequence[str], project_path: PathLike) -> List[str]:
    if overlay.optimizers is None:
        return list(available)
    for name in overlay.optimizers:
        if name not in available:
            close = difflib.get_close_matches(name, list(available), n=3, cutoff=0.3)
            raise NncToolsError(
                overlay.path,
                f"optimizers: '{name}' does not exist in {project_path} (optimizers there: {', '.join(available) or 'none'}"
                + (f"; closest: {', '.join(close)})" if close else ")"),
            )
    return list(overlay.optimizers)


def fractional(changes: Sequence[Change]) -> List[Change]:
    """Changes to a multiplier other than 0 or 1: NNC and nnabla_cli train those at the full rate."""
    return [c for c in changes if c.changed and c.new not in (0.0, 1.0)]


def format_changes(changes: Sequence[Change]) -> str:
    """The table `apply-freeze` prints (changed rows only) and a one-line summary."""
    rows = [c for c in changes if c.changed]
    lines = []
    if rows:
        width = max(len(c.target) for c in rows)
        owidth = max(len(c.optimizer) for c in rows)
        for c in rows:
            old = "absent" if c.old is None else f"{c.old:g}"
            lines.append(f"{c.target:<{width}}  {c.optimizer:<{owidth}}  {old} -> {c.new:g}")
    frozen = sum(1 for c in changes if c.new == 0)
    if rows:
        lines.append(f"{len(rows)} multipliers changed ({len(changes) - len(rows)} already as the overlay says); {frozen} frozen in all")
    else:
        lines.append(f"nothing to change: all {len(changes)} multipliers the overlay sets are already as it says")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- NNabla projects


def proto_view(proto, optimizer) -> NetworkView:
    """Slots of an optimizer's network, in function order; parameters it lists but its network lacks come last."""
    network = next((n for n in proto.network if n.name == optimizer.network_name), None)
    view = NetworkView([])
    seen = set()
    if network is not None:
        parameters = {v.name for v in network.variable if v.type == "Parameter"}
        prefix = network.name + "/"
        for i, function in enumerate(network.function):
            for name in (function.name, function.name[len(prefix):] if function.name.startswith(prefix) else None):
                if name:
                    view.positions.setdefault(name, i)
            for name in function.input:
                if name in parameters and name not in seen:
                    seen.add(name)
                    view.slots.append(Slot(name, layer_of(name), name.rsplit("/", 1)[-1], i))
    end = len(network.function) if network is not None else 0
    for k, pv in enumerate(optimizer.parameter_variable):
        if pv.variable_name not in seen:
            seen.add(pv.variable_name)
            view.slots.append(Slot(pv.variable_name, layer_of(pv.variable_name), pv.variable_name.rsplit("/", 1)[-1], end + k))
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
    return changes


# ------------------------------------------------------------------------------------------------------------ .sdcproj


def apply_to_sdcproj(sdc, overlay: Overlay) -> List[Change]:
    """Set the layers' ``<param>.LRateMultiplier`` properties in the networks of the selected optimizers."""
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
    layers = {net: sdc.layers(net) for net in owners if net in sdc.network_names()}
    views = {}
    for net, net_layers in layers.items():
        view = NetworkView([])
        for i, layer in enumerate(net_layers):
            view.positions.setdefault(layer.name, i)
            for short in layer.parameter_names():
                view.slots.append(Slot(layer.parameter(short), layer.name, short, i))
        views[net] = view
    chosen = resolve(overlay, views, sdc.path)
    multi = len(sdc.network_names()) > 1 or sdc.get("Global", "NumNetwork") is not None
    changes: List[Change] = []
    for net, net_layers in layers.items():
        for layer, short in ((layer, s) for layer in net_layers for s in layer.parameter_names()):
            new = chosen[net].get(layer.parameter(short))
            if new is None:
                continue
            old = layer.multiplier(short)
            target = f"{net}:{layer.name} {short}.LRateMultiplier" if multi else f"{layer.name} {short}.LRateMultiplier"
            changes.append(Change(target, ",".join(owners[net]), old, new))
            if old != new:
                sdc.set_multiplier(layer, short, new)
    return changes


# --------------------------------------------------------------------------------------------------------------- files


@dataclass
class FreezeResult:
    project: Path
    overlay: Path
    output: Optional[Path]  # None when nothing was written (dry run, or in place with nothing to change)
    changes: List[Change]
    warnings: List[str]


def apply_freeze(
    project: PathLike, overlay: Optional[PathLike] = None, output: Optional[PathLike] = None, dry_run: bool = False
) -> FreezeResult:
    """Apply an overlay to a project file (.nnp/.nntxt/.prototxt/.protobuf/.sdcproj), in place unless ``output`` is given.

    The whole overlay is checked against the project before anything is written. An ``.nnp`` gets only its network
    text rewritten; an ``.sdcproj`` only its ``*.LRateMultiplier`` property lines.
    """
    project = Path(project)
    overlay_path = Path(overlay) if overlay is not None else find_overlay(project)
    ext = project.suffix.lower()
    target = Path(output) if output is not None else project
    if target.suffix.lower() != ext:
        raise NncToolsError(target, f"output must have the input's extension '{ext}' (use nnc-tl convert to change format)")
    in_place = output is None or (target.exists() and same_file(target, project))
    # An .nnp keeps every member but its network as stored: the copy (a kernel copy as long as cp's) starts now and
    # runs while the overlay and the network are read and edited.
    with CopyAhead(project, target) if ext == ".nnp" and not dry_run else contextlib.nullcontext() as ahead:
        rules = load_overlay(overlay_path)
        if ext == ".sdcproj":
            sdc = load_sdcproj(project)
            changes = apply_to_sdcproj(sdc, rules)
            save = functools.partial(_write_sdcproj, target, sdc)
        elif ext in PROJECT_EXTS:
            from ..formats.nnp import load_project, save_project  # protobuf, also while the copy runs

            loaded = load_project(project)
            changes = apply_to_proto(loaded.proto, rules, project)
            save = functools.partial(save_project, loaded, target, replace_input=in_place, ahead=ahead)
        else:
            raise NncToolsError(project, f"unknown project file extension '{project.suffix}' "
                                f"(expected {', '.join(PROJECT_EXTS)}, .sdcproj)")
        write = not dry_run and not (in_place and not any(c.changed for c in changes))
        if write:
            save()
    warnings = []
    odd = fractional(changes)
    if odd:
        examples = ", ".join(f"{c.target} x{c.new:g}" for c in odd[:3]) + (", ..." if len(odd) > 3 else "")
        warnings.append(
            f"{len(odd)} multipliers other than 0 or 1 ({examples}): NNC and nnabla_cli train every non-zero multiplier "
            "at the full rate; nnc-tl train applies them exactly"
        )
    return FreezeResult(project, overlay_path, target if write else None, changes, warnings)


def _write_sdcproj(target: Path, sdc: SdcProject) -> None:
    with atomic_output(target) as temp:
        temp.write_bytes(sdc.to_bytes())
