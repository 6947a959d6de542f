"""The overlays an experiment's arms apply, checked before any stage runs: the fine-tune phases, the overlays derived for
the user's own source project, and that each fits the network it is applied to."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

from ..errors import NncToolsError, first_few
from ..formats.nnp import load_project
from ..project.export import build_project
from ..project.freeze import apply_to_proto
from ..project.overlay import load_overlay, parse_overlay
from ..project.retarget import left_to_initializer
from .config import REPO_ROOT, ExperimentConfig

log = logging.getLogger(__name__)


# The overlays a run states for the user's own network (``--source-project``) when none was given for it: the transfer
# arm freezes every parameterised layer but the last (the head); the fine-tune arm trains the head alone for a fifth of
# the target epochs, then every layer at a tenth of the rate.
DERIVED = {"transfer": "derived-transfer.yaml", "fine-tune": "derived-fine-tune.yaml"}
DERIVED_TRANSFER = "# derived by nnc-tl for --source-project: every parameterised layer but the last frozen\n" \
                   "rules:\n  - all_but_last: 1\n    multiplier: 0\n"


def derived_overlays(config: ExperimentConfig, own_source: bool) -> Dict[str, str]:
    """Arm -> the overlay text derived for it: with the user's own project as the source, the zoo's overlays (this
    checkout's ``networks/``, the default and what the reference configs name) name another network's layers; one the
    user gives (a flag, or a file of theirs the config names) is taken as written for this source."""
    if not own_source:
        return {}
    derived = {}
    for kind, key in (("transfer", "overlay"), ("fine-tune", "fine_tune")):
        value = getattr(config, key)
        given = key in config.flags or (key in config.given and value and not _in_the_zoo(config.path(value)))
        if kind not in config.arms or given:
            continue
        if kind == "transfer":
            derived[kind] = DERIVED_TRANSFER
            continue
        if config.target_epochs < 2:
            raise NncToolsError(config.base, "the fine-tune arm's derived phases need at least 2 target epochs (or give "
                                "fine_tune: PHASES.yaml for your network)")
        head = max(1, config.target_epochs // 5)
        derived[kind] = ("# derived by nnc-tl for --source-project: the head alone, then every layer at a tenth of the rate\n"
                         f"phases:\n  - epochs: {head}\n    rules:\n      - all_but_last: 1\n        multiplier: 0\n"
                         f"  - epochs: {config.target_epochs - head}\n    lr_scale: 0.1\n    rules:\n"
                         "      - all_but_last: 0\n        multiplier: 1\n")
    for kind in derived:
        log.info(f"[experiment] {kind}: the config's {'overlay' if kind == 'transfer' else 'phases'} name "
                 f"{config.network}'s layers, not your project's; using {DERIVED[kind]} (see the report)")
    return derived


def fine_tune_phases(config: ExperimentConfig) -> Optional[Path]:
    """The fine-tune arm's phases overlay, checked: there, with phases adding up to the target epochs."""
    if "fine-tune" not in config.arms:
        return None
    if config.fine_tune is None:
        raise NncToolsError(config.base, "arms: fine-tune needs 'fine_tune: PHASES.yaml' (an overlay with phases)")
    path = config.path(config.fine_tune)
    overlay = load_overlay(path)
    total = sum(p.epochs for p in overlay.phases or [])
    if total != config.target_epochs:
        raise NncToolsError(path, f"its phases take {total} epochs; the target runs take {config.target_epochs}")
    return path


def check_overlays_fit(config: ExperimentConfig, overlay: Optional[Path], phases: Optional[Path], derived: Dict[str, str],
                        source_project: Optional[Path]) -> None:
    """The transfer overlay and every fine-tune phase match the network the arms train, before any stage runs (a
    mismatch found after the scratch arm trained would leave half a run)."""
    import yaml

    overlays = []
    if "transfer" in config.arms:
        overlays.append(parse_overlay(yaml.safe_load(derived["transfer"]), DERIVED["transfer"]) if "transfer" in derived
                        else load_overlay(overlay))
    if "fine-tune" in config.arms:
        overlays.append(parse_overlay(yaml.safe_load(derived["fine-tune"]), DERIVED["fine-tune"]) if "fine-tune" in derived
                        else load_overlay(phases))
    if not overlays:
        return
    if source_project is not None:
        project = load_project(source_project)
        _check_source_trained(project, source_project)
        proto = project.proto
    else:
        proto = build_project(config.network).proto
    for each in overlays:
        for part in [p.overlay for p in each.phases] if each.phases else [each]:
            trial = type(proto)()
            trial.CopyFrom(proto)
            apply_to_proto(trial, part, source_project or config.network)


def _check_source_trained(project, path: Path) -> None:
    """The transfer and fine-tune arms start from the source's values: lacking some (an ``.sdcproj`` without results,
    a project saved untrained), they would be partly random, found only after the scratch arm trained."""
    left = left_to_initializer(project.proto, project.parameters)
    if left:
        raise NncToolsError(path, f"holds no values for {len(left)} of its parameters ({first_few(left)}): the transfer "
                            "and fine-tune arms need a trained source (give a trained .nnp, or its parameters: convert it "
                            "with them first)")


def _in_the_zoo(path: Path) -> bool:
    zoo = REPO_ROOT / "networks"
    return path.resolve().parent == zoo.resolve()
