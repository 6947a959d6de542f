"""How an overlay's rules meet a network: every parameter as a ``Slot`` with the names a rule may call it by, in
network order (``NetworkView``), the multipliers the rules choose (``resolve``), and the table of changes."""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import NncToolsError
from ..fileio import PathLike
from ..formats.naming import is_statistic, layer_of
from ..formats.schema import FLOAT32_TINY, as_float32
from .overlay import Overlay, Rule


@dataclass
class Slot:
    """A parameter as the overlay sees it, in one network: full name, NNC layer name, last name component, position,
    and every name a rule may call its layer by (``names``)."""

    parameter: str
    layer: str
    short: str
    position: int
    names: frozenset = frozenset()


@dataclass
class NetworkView:
    """What rules match against in one network: parameter slots and the network order of every named layer/function."""

    slots: List[Slot]
    positions: Dict[str, int] = field(default_factory=dict)
    current: Dict[str, float] = field(default_factory=dict)  # each parameter's multiplier before the overlay


@dataclass
class Change:
    """One value the overlay sets: ``target`` (parameter, or layer property for .sdcproj), optimizers, old → new; a
    multiplier, or (``multiplier`` false) a Batch Normalization's batch statistics switch (``frozen_bn``)."""

    target: str
    optimizer: str
    old: Optional[float]
    new: float
    multiplier: bool = True

    @property
    def changed(self) -> bool:
        """Whether the file changes: values compared as the project stores them (a float32), so that applying
        ``{Affine: 0.1}`` twice changes nothing the second time."""
        return self.old is None or as_float32(self.old) != as_float32(self.new)

    def values(self) -> str:
        if not self.multiplier:
            return f"{bool(self.old)} -> {bool(self.new)}"
        return f"{'absent' if self.old is None else f'{self.old:g}'} -> {self.new:g}"


def view_of(functions: Sequence[Tuple[str, Sequence[str]]], prefix: str = "", extra: Sequence[str] = ()) -> NetworkView:
    """The view of a network given as (function name, parameters it reads) in network order; ``prefix`` is the
    network's own name prefix on function names (``Main/``), ``extra`` parameters the optimizer lists that no
    function reads (they come last). Both back-ends build their views here, so that they name layers alike."""
    view = NetworkView([])
    seen = set()
    for i, (function, parameters) in enumerate(functions):
        aliases = _aliases(function, prefix)
        for name in aliases:
            view.positions.setdefault(name, i)
        for name in parameters:
            if name not in seen:
                seen.add(name)
                view.slots.append(_slot(name, i, aliases))
    for k, name in enumerate(n for n in extra if n not in seen):
        view.slots.append(_slot(name, len(functions) + k, ()))
    return view


def _aliases(function: str, prefix: str) -> List[str]:
    """A function's names: as it stands, without its network's prefix, and (inside a Unit) the layer's own Name."""
    names = [function]
    if prefix and function.startswith(prefix):
        names.append(function[len(prefix):])
    names.append(function.rsplit("/", 1)[-1])
    return list(dict.fromkeys(n for n in names if n))


def _slot(parameter: str, position: int, aliases: Sequence[str]) -> Slot:
    layer = layer_of(parameter)
    names = {layer, _REPEAT.sub("", layer), *aliases}
    return Slot(parameter, layer, parameter.rsplit("/", 1)[-1], position, frozenset(names))


_REPEAT = re.compile(r"\{[^}]*\}")  # NNC's converter marks a parameter inside a Repeat block: Convolution_2{RepeatStart}


def _glob(pattern: str, slot: Slot) -> bool:
    if "/" in pattern and fnmatch.fnmatchcase(slot.parameter, pattern):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for name in slot.names)


def _up_to_position(name: str, view: NetworkView) -> Optional[int]:
    if name in view.positions:
        return view.positions[name]
    layer_positions = [s.position for s in view.slots if name in s.names]
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
        for i, rule in enumerate(overlay.rules):  # in file order: the last rule that sets a parameter wins
            if rule.decay is not None:
                decayed = _decayed(rule, view, chosen, overlay.path)
                used[i] = used[i] or bool(decayed)
                chosen.update(decayed)
                continue
            for slot in view.slots:
                if rule_matches(rule, slot, view):
                    used[i] = True
                    chosen[slot.parameter] = rule.multiplier
        result[optimizer] = chosen
    for rule, was_used in zip(overlay.rules, used):
        if not was_used:
            raise NncToolsError(overlay.path, _no_match_message(rule, views, project_path))
    return result


def _decayed(rule: Rule, view: NetworkView, chosen: Dict[str, float], where) -> Dict[str, float]:
    """A decay rule's multipliers: the parameterised layers in network order (BN statistics aside), the ``from`` layer's
    multiplier (as the rules so far left it) times ``decay`` for the layer before it, squared for the one before that…"""
    layers: Dict[str, List[Slot]] = {}
    for slot in sorted(view.slots, key=lambda s: s.position):
        if not is_statistic(slot.parameter) and (rule.params is None or slot.short in rule.params):
            layers.setdefault(slot.layer, []).append(slot)
    order = list(layers)
    start = next((k for k, layer in enumerate(order) if any(rule.start in s.names for s in layers[layer])), None)
    stop = 0 if rule.to is None else next((k for k, layer in enumerate(order)
                                          if any(rule.to in s.names for s in layers[layer])), None)
    if start is None or stop is None or stop > start:
        return {}
    top = layers[order[start]]
    anchor = next((s for s in top if s.short == "W"), top[0]).parameter
    base = chosen.get(anchor, view.current.get(anchor, 1.0))
    values = {}
    for k in range(start - 1, stop - 1, -1):
        value = base * rule.decay ** (start - k)
        if 0 < value < FLOAT32_TINY or not math.isfinite(value):
            raise NncToolsError(where, f"{rule.where}: decay {rule.decay:g} from {rule.start} gives {value:g} at {order[k]}, "
                                "which a float32 multiplier cannot hold (use 'to' to stop earlier)")
        values.update({s.parameter: value for s in layers[order[k]]})
    return values


def _no_match_message(rule: Rule, views: Dict[str, NetworkView], project_path: PathLike) -> str:
    names = set()
    for view in views.values():
        for slot in view.slots:
            if rule.params is None or slot.short in rule.params:
                names.update((slot.layer, slot.parameter))
        if rule.up_to is not None:
            names.update(view.positions)
    wanted = rule.match if rule.match is not None else rule.up_to if rule.up_to is not None else rule.start
    close = difflib.get_close_matches(wanted, sorted(names), n=3, cutoff=0.5) or sorted(
        {s.layer for v in views.values() for s in v.slots}
    )[:3]
    kind = "match" if rule.match is not None else "up_to" if rule.up_to is not None else "decay from"
    if rule.decay is not None and rule.to is not None:
        wanted = f"{rule.start}' to '{rule.to}"
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
    return [c for c in changes if c.multiplier and c.changed and c.new not in (0.0, 1.0)]


def format_changes(changes: Sequence[Change]) -> str:
    """The table `apply-freeze` prints (changed rows only) and a one-line summary."""
    rows = [c for c in changes if c.changed]
    lines = []
    if rows:
        width = max(len(c.target) for c in rows)
        owidth = max(len(c.optimizer) for c in rows)
        for c in rows:
            lines.append(f"{c.target:<{width}}  {c.optimizer:<{owidth}}  {c.values()}")
    multipliers = [c for c in changes if c.multiplier]
    changed = [c for c in multipliers if c.changed]
    frozen = sum(1 for c in multipliers if c.new == 0)
    switched = len(rows) - len(changed)
    if rows:
        bn = f"; {switched} Batch Normalization layers switched (frozen_bn)" if switched else ""
        lines.append(f"{len(changed)} multipliers changed ({len(multipliers) - len(changed)} already as the overlay says); "
                     f"{frozen} frozen in all{bn}")
    else:
        lines.append(f"nothing to change: all {len(changes)} multipliers the overlay sets are already as it says")
    return "\n".join(lines)
