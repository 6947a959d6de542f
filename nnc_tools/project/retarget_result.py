"""What ``retarget`` is asked to do (``RetargetOptions``) and what it did (``RetargetResult``), for both kinds of target:
an NNabla project and NNC's own ``.sdcproj``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..fileio import PathLike
from ..formats.naming import SDCPROJ_EXT
from .heads import Head
from .matching import Change
from .nnc_weights import WeightAssignment


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
    allow_frozen_initial: bool = False  # write it even when a frozen parameter gets no weights (stays random)
    fixed_crop: bool = False  # training sees the validation centre crop: no random augmentation (image_inputs)
    input_size: Optional[int] = None  # the networks run at this size instead of their own crop (image_inputs)


@dataclass
class RetargetResult:
    """What a retarget did, for either kind of target: an NNabla project (parameters re-initialised, copied, solver
    states dropped) or an ``.sdcproj`` (the lines edited, the weights NNC loads)."""

    target: Path
    head: Head
    classes: int
    classes_from: str
    networks: List[str]  # where the head was resized (none: the head is kept)
    datasets: Dict[str, str]
    changes: List[Change] = field(default_factory=list)
    written: List[Path] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    reinitialised: List[str] = field(default_factory=list)  # NNabla target: parameters drawn anew
    copied: int = 0  # NNabla target: parameters copied bit for bit
    left: List[str] = field(default_factory=list)  # NNabla target: parameters with no values (their initializer draws them)
    dropped: List[str] = field(default_factory=list)  # NNabla target: solver-state members left out
    edits: List[Tuple[str, str, str]] = field(default_factory=list)  # .sdcproj target: (layer property, old, new)
    weights: Optional[WeightAssignment] = None  # .sdcproj target with --weights: which parameters NNC loads from where
    renamed: Optional[Tuple[List[str], List[str]]] = None  # same count, other class names: (old, new), the head drawn anew
    fitted: List[str] = field(default_factory=list)  # NNabla target: input preprocessing fitted to the images (image_inputs)

    @property
    def is_sdcproj(self) -> bool:
        return self.target.suffix.lower() == SDCPROJ_EXT
