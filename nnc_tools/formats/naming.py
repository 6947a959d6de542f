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


def is_computed(name: str) -> bool:
    """A parameter the functions compute, not a solver: Batch Normalization's and MeanSubtraction's statistics, a
    binary layer's binarised weights (``Wb``); NNC's multiplier for them is 0 unless set."""
    return is_statistic(name) or name.endswith(("/mean_subtraction/mean", "/mean_subtraction/t", "/Wb"))


def repeat_expansions(name: str, names) -> list:
    """The names NNabla's loader gives a parameter inside a Repeat block, as found in ``names``: NNC's converter writes
    ``Convolution_2{RepeatStart_3}/conv/W`` (one per layer), the loader creates one per repetition with each ``{…}``
    replaced by ``[i]`` (``Convolution_2[0]/conv/W``, ``Convolution_2[1]/conv/W`` …), and every ``results.nnp`` a trained
    run saves holds those."""
    import re

    if "{" not in name:
        return []
    parts = re.split(r"\{[^}]*\}", name)
    pattern = re.compile(r"\[\d+\]".join(re.escape(p) for p in parts) + r"\Z")
    return sorted(n for n in names if pattern.match(n))
