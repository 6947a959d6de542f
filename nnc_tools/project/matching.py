"""How an overlay's rules meet a project's networks (``views``): the multipliers the rules choose (``resolve``), the
optimizers an overlay names, and the table of changes it makes."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from ..errors import NncToolsError, about
from ..fileio import PathLike
from ..formats.schema import as_float32
from .overlay import Overlay
from .rules import Rule
from .views import NetworkView

log = logging.getLogger(__name__)


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


def resolve(overlay: Overlay, views: Dict[str, NetworkView], project_path: PathLike) -> Dict[str, Dict[str, float]]:
    """Multiplier per optimizer and parameter for every parameter some rule selects; every rule must select something."""
    result: Dict[str, Dict[str, float]] = {}
    used = [False] * len(overlay.rules)
    for optimizer, view in views.items():
        chosen: Dict[str, float] = {}
        for i, rule in enumerate(overlay.rules):  # in file order: the last rule that sets a parameter wins
            try:
                selected = rule.select(view, chosen)
            except NncToolsError as e:
                raise about(overlay.path, e) from None
            used[i] = used[i] or bool(selected)
            chosen.update(selected)
        result[optimizer] = chosen
    for rule, was_used in zip(overlay.rules, used):
        if not was_used:
            raise NncToolsError(overlay.path, _no_match_message(rule, views, project_path))
    for rule in overlay.rules:
        layers = ambiguous_layers(rule, views)
        if layers:
            sets = "all of them" if rule.KEY == "match" else "the parameters up to the first"
            log.warning(f"warning: {rule.where}: '{rule.target}' names {len(layers)} layers ({', '.join(layers[:6])}"
                        f"{', ...' if len(layers) > 6 else ''}); the rule sets {sets} — pick one by its qualified name "
                        f"('{layers[0]}') or its parameters' names ('{layers[-1]}/*/*')")
    return result


def ambiguous_layers(rule: Rule, views: Dict[str, NetworkView]) -> List[str]:
    """The layers a rule's plain name (no wildcard, no '/') stands for when it stands for more than one (NIN's
    ``Convolution_3`` in three Units and at the top level); none otherwise."""
    target = getattr(rule, "target", "")
    if not target or "/" in target or any(c in target for c in "*?["):
        return []
    found = dict.fromkeys(s.layer for view in views.values() for s in view.slots if target in s.names)
    return list(found) if len(found) > 1 else []


def _no_match_message(rule: Rule, views: Dict[str, NetworkView], project_path: PathLike) -> str:
    names = {name for view in views.values() for name in rule.candidates(view)}
    close = difflib.get_close_matches(rule.wanted(), sorted(names), n=3, cutoff=0.5) or sorted(
        {s.layer for v in views.values() for s in v.slots}
    )[:3]
    params = f" with params {list(rule.params)}" if rule.params else ""
    return f"{rule.where}: {rule.describe()}{params} matches nothing in {project_path} (closest: {', '.join(close) or 'none'})"


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
