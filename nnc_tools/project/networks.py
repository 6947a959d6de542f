"""The network zoo: one small builder per network, registered with ``@register``, named the way NNC names layers.

A builder takes the input variable, the number of classes and ``test`` (no dropout, Batch Normalization on running
statistics) and returns the logits (the last Affine). Layers are named by :class:`NncNames` in the order they are
created — ``Convolution``, ``Convolution_2`` … — so parameters read ``Convolution_2/conv/W``, as in a project drawn in NNC.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF

from ..errors import NncToolsError

Builder = Callable[[nn.Variable, int, bool], nn.Variable]


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    builder: Builder
    description: str


_REGISTRY: Dict[str, NetworkSpec] = {}


def register(fn: Builder) -> Builder:
    """Add a builder to the zoo under its function name; its docstring's first line describes it."""
    _REGISTRY[fn.__name__] = NetworkSpec(fn.__name__, fn, (fn.__doc__ or "").strip().splitlines()[0])
    return fn


def list_networks(pattern: str = "*") -> List[str]:
    import fnmatch

    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def get_network(name: str) -> NetworkSpec:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"closest: {', '.join(close)}" if close else f"available: {', '.join(list_networks())}"
        raise NncToolsError(None, f"unknown network '{name}' ({hint})")
    return _REGISTRY[name]


class NncNames:
    """NNC's layer names: the type, then ``_2``, ``_3`` … per type in creation order."""

    def __init__(self) -> None:
        self._count: Counter = Counter()

    def __call__(self, layer_type: str) -> str:
        self._count[layer_type] += 1
        n = self._count[layer_type]
        return layer_type if n == 1 else f"{layer_type}_{n}"


def conv_bn_relu(h: nn.Variable, maps: int, names: NncNames, test: bool, batch_norm: bool = True, stride: int = 1) -> nn.Variable:
    h = PF.convolution(h, maps, (3, 3), pad=(1, 1), stride=(stride, stride), name=names("Convolution"))
    if batch_norm:
        h = PF.batch_normalization(h, batch_stat=not test, name=names("BatchNormalization"))
    return F.relu(h)


def _vgg(x: nn.Variable, num_classes: int, test: bool, batch_norm: bool) -> nn.Variable:
    names = NncNames()
    h = x
    for maps in (64, 128, 128):
        for _ in range(3):
            h = conv_bn_relu(h, maps, names, test, batch_norm)
        h = F.max_pooling(h, (2, 2))
    for _ in range(2):
        h = F.relu(PF.affine(h, 1024, name=names("Affine")))
        if not test:
            h = F.dropout(h, 0.5)
    return PF.affine(h, num_classes, name=names("Affine"))


@register
def mini_vggnet_mark2(x: nn.Variable, num_classes: int, test: bool = False) -> nn.Variable:
    """VGG-16 from its 5th convolution, channels / 4, Batch Normalization after every convolution (the reference network)."""
    return _vgg(x, num_classes, test, batch_norm=True)


@register
def mini_vggnet(x: nn.Variable, num_classes: int, test: bool = False) -> nn.Variable:
    """mini_vggnet_mark2 without Batch Normalization."""
    return _vgg(x, num_classes, test, batch_norm=False)


@register
def resnet20(x: nn.Variable, num_classes: int, test: bool = False) -> nn.Variable:
    """CIFAR ResNet-20 (He et al. 2016): 3 stages of 3 basic blocks, 16/32/64 maps, 1x1 projection shortcuts."""
    names = NncNames()
    h = conv_bn_relu(x, 16, names, test)
    for stage, maps in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            r = conv_bn_relu(h, maps, names, test, stride=stride)
            r = PF.convolution(r, maps, (3, 3), pad=(1, 1), name=names("Convolution"))
            r = PF.batch_normalization(r, batch_stat=not test, name=names("BatchNormalization"))
            if stride != 1 or h.shape[1] != maps:
                h = PF.convolution(h, maps, (1, 1), stride=(stride, stride), with_bias=False, name=names("Convolution"))
                h = PF.batch_normalization(h, batch_stat=not test, name=names("BatchNormalization"))
            h = F.relu(F.add2(h, r))
    h = F.global_average_pooling(h)
    return PF.affine(h, num_classes, name=names("Affine"))
