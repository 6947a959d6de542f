"""NNabla's and NNC's naming rules: project file extensions and what a parameter's name says about its layer."""

from __future__ import annotations

TEXT_EXTS = (".nntxt", ".prototxt")
PROJECT_EXTS = (".nnp",) + TEXT_EXTS + (".protobuf",)
PARAMETER_EXTS = (".h5", ".protobuf")
SDCPROJ_EXT = ".sdcproj"


def layer_of(parameter: str) -> str:
    """NNC's layer name for a parameter: the name without its last two components (``Unit/Affine/affine/W`` → ``Unit/Affine``)."""
    parts = parameter.split("/")
    return "/".join(parts[:-2]) if len(parts) >= 3 else "/".join(parts[:-1]) or parameter


def is_statistic(name: str) -> bool:
    """Batch Normalization's running mean and variance: parameters no solver trains."""
    return name.endswith(("/bn/mean", "/bn/var"))
