"""NNC's layer types' shape rules, as NNC's converter computes them: a layer's output shape, its parameters' shapes and
a loss's target shape from its properties (``p``, resolved strings) and input shapes (``shapes``, without the batch
axis). Facts read from NNC's layer catalogue (``nnabla-corelib-defs.js``) and checked against the converter."""

from __future__ import annotations

import math
from typing import Callable, List, Tuple

Shape = Tuple[int, ...]


def ints(text: str) -> List[int]:
    return [int(float(v)) for v in text.split(",") if v.strip() != ""]


def same(p, shapes) -> Shape:
    return tuple(shapes[0])


def broadcast(p, shapes) -> Shape:
    a, b = list(shapes[0]), list(shapes[-1])  # (one input: its other is a data pin of its shape)
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
    return tuple(max(x, y) if 1 in (x, y) else x for x, y in zip(a, b))


def scalar(p, shapes) -> Shape:
    return (1,)


def reduce_axis(p, shapes) -> Shape:
    """A loss over classes (CategoricalCrossEntropy, SoftmaxCrossEntropy, TopNError): the class axis becomes 1."""
    shape = list(shapes[0])
    shape[int(p.get("Axis", str(len(shape) - 1)))] = 1
    return tuple(shape)


def _spatial(p, shapes, rule) -> Shape:
    x = list(shapes[0])
    kernel = ints(p["KernelShape"])
    stride = ints(p.get("Strides") or ",".join("1" for _ in kernel))
    pad = ints(p.get("Padding") or ",".join("0" for _ in kernel))
    dilation = ints(p.get("Dilation") or ",".join("1" for _ in kernel))
    n = len(kernel)
    return tuple(x[:-n]), [rule(i, k, s, q, d) for i, k, s, q, d in zip(x[-n:], kernel, stride, pad, dilation)]


def convolution(maps: Callable) -> Callable:
    def out(p, shapes) -> Shape:
        lead, spatial = _spatial(p, shapes, lambda i, k, s, q, d: (i + 2 * q - d * (k - 1) - 1) // s + 1)
        return (maps(p, shapes),) + tuple(spatial)
    return out


def deconvolution(p, shapes) -> Shape:
    lead, spatial = _spatial(p, shapes, lambda i, k, s, q, d: s * (i - 1) + d * (k - 1) + 1 - 2 * q)
    return (int(p["OutMaps"]),) + tuple(spatial)


def _c_division(a: int, b: int) -> int:
    """Integer division as C++ does it (towards zero), as NNabla's kernels and NNC's converter compute shapes."""
    return a // b if a >= 0 else -(-a // b)


def pooling(p, shapes) -> Shape:
    """A kernel larger than its (padded) input still gives 1 where the border is ignored: (6 - 7) / 7 + 1 in C++."""
    ignore = p.get("IgnoreBorder", "True") == "True"
    lead, spatial = _spatial(dict(p, Strides=p.get("Strides") or p["KernelShape"]), shapes,
                             lambda i, k, s, q, d: _c_division(i + 2 * q - k, s) + 1 if ignore else
                             (i + q - 1) // s + 1)
    return tuple(lead) + tuple(spatial)


def affine_out(p, shapes) -> Shape:
    return tuple(ints(p["OutShape"]))


def _affine_in(p, shapes) -> int:
    return math.prod(shapes[0][int(p.get("BaseAxis", "0")):])


def affine_params(p, shapes):
    w = (_affine_in(p, shapes),) + affine_out(p, shapes)
    return [("W", w)] + ([("b", affine_out(p, shapes))] if p.get("WithBias", "True") == "True" else [])


def binary_affine_params(p, shapes):
    w = (_affine_in(p, shapes),) + affine_out(p, shapes)
    return [("W", w), ("Wb", w)] + ([("b", affine_out(p, shapes))] if p.get("WithBias", "True") == "True" else [])


def conv_params(p, shapes):
    maps, group = int(p["OutMaps"]), int(p.get("Group", "1"))
    w = (maps, shapes[0][0] // group) + tuple(ints(p["KernelShape"]))
    return [("W", w)] + ([("b", (maps,))] if p.get("WithBias", "True") == "True" else [])


def binary_conv_params(p, shapes):
    (w_name, w), *rest = conv_params(p, shapes)
    return [("W", w), ("Wb", w)] + rest


def deconv_params(p, shapes):
    maps, group = int(p["OutMaps"]), int(p.get("Group", "1"))
    w = (shapes[0][0], maps // group) + tuple(ints(p["KernelShape"]))
    return [("W", w)] + ([("b", (maps,))] if p.get("WithBias", "True") == "True" else [])


def depthwise_maps(p, shapes) -> int:
    return shapes[0][0] * int(p.get("Multiplier", "1"))


def depthwise_params(p, shapes):
    maps = depthwise_maps(p, shapes)
    return [("W", (maps,) + tuple(ints(p["KernelShape"])))] + \
        ([("b", (maps,))] if p.get("WithBias", "True") == "True" else [])


def bn_params(p, shapes):
    axes = ints(p.get("Axes", "0"))
    shape = (1,) + tuple(n if i in axes else 1 for i, n in enumerate(shapes[0]))
    return [(short, shape) for short in ("beta", "gamma", "mean", "var")]


def prelu_params(p, shapes):
    return [("slope", () if p.get("Shared", "False") == "True" else (shapes[0][int(p.get("BaseAxis", "0"))],))]


def concatenate(p, shapes) -> Shape:
    axis = int(p.get("Axis", "0"))
    out = list(shapes[0])
    if any(len(s) != len(out) or any(a != b for k, (a, b) in enumerate(zip(s, out)) if k != axis) for s in shapes):
        raise ValueError(f"inputs {' and '.join(str(list(s)) for s in shapes)} differ off axis {axis}")
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def reduce(p, shapes) -> Shape:
    axes = ints(p.get("Axes", ",".join(str(i) for i in range(len(shapes[0])))))
    keep = p.get("KeepDims", "False") == "True"
    out = [1 if i in axes else n for i, n in enumerate(shapes[0])] if keep else \
        [n for i, n in enumerate(shapes[0]) if i not in axes]
    return tuple(out) or (1,)


def slice_out(p, shapes) -> Shape:
    start, stop, step = ints(p["Start"]), ints(p["Stop"]), ints(p["Step"])
    x = list(shapes[0])
    lead = len(x) - len(start)
    return tuple(x[:lead]) + tuple(len(range(a, b, c)) for a, b, c in zip(start, stop, step))


def transpose(p, shapes) -> Shape:
    return tuple(shapes[0][a] for a in ints(p["Axes"]))


def unpooling(p, shapes) -> Shape:
    kernel = ints(p["KernelShape"])
    x = list(shapes[0])
    n = len(kernel)
    return tuple(x[:-n]) + tuple(i * k for i, k in zip(x[-n:], kernel))


def pad_out(p, shapes) -> Shape:
    width = ints(p["PadWidth"])
    x = list(shapes[0])
    n = len(width) // 2
    return tuple(x[:-n]) + tuple(i + width[2 * k] + width[2 * k + 1] for k, i in enumerate(x[-n:]))


def outshape(p, shapes) -> Shape:
    return tuple(ints(p["OutShape"]))


def one_hot(p, shapes) -> Shape:
    return tuple(shapes[0][:-1]) + tuple(ints(p["Shape"]))


def image_augmentation(p, shapes) -> Shape:
    return tuple(ints(p["Shape"]))


def identity_target(shape: Shape) -> Shape:
    return shape


def class_target(shape: Shape) -> Shape:
    """A class-index target: one label per sample (the class axis becomes 1)."""
    return tuple(shape[:-1]) + (1,)


def double_axis(p, shapes) -> Shape:
    """CReLU, CELU: the activation of x and of -x, concatenated along ``Axis``."""
    out = list(shapes[0])
    out[int(p.get("Axis", "0"))] *= 2
    return tuple(out)


def global_pooling(p, shapes) -> Shape:
    return (shapes[0][0],) + tuple(1 for _ in shapes[0][1:])


def depthwise_deconvolution(p, shapes) -> Shape:
    lead, spatial = _spatial(p, shapes, lambda i, k, s, q, d: s * (i - 1) + d * (k - 1) + 1 - 2 * q)
    return (shapes[0][0] // int(p.get("Divisor", "1")),) + tuple(spatial)


def depthwise_deconv_params(p, shapes):
    maps = shapes[0][0] // int(p.get("Divisor", "1"))
    return [("W", (shapes[0][0],) + tuple(ints(p["KernelShape"])))] + \
        ([("b", (maps,))] if p.get("WithBias", "True") == "True" else [])


def embed(p, shapes) -> Shape:
    return tuple(shapes[0]) + tuple(ints(p["Shape"]))


def embed_params(p, shapes):
    return [("W", (int(p["NumClass"]),) + tuple(ints(p["Shape"])))]


def mean_subtraction_params(p, shapes):
    return [("mean", tuple(shapes[0][int(p.get("BaseAxis", "0")):])), ("t", (1,))]


def tile(p, shapes) -> Shape:
    reps = ints(p["Reps"])
    x = list(shapes[0])
    x = [1] * (len(reps) - len(x)) + x
    n = len(reps)
    return tuple(x[:-n]) + tuple(i * r for i, r in zip(x[-n:], reps))


def stack(p, shapes) -> Shape:
    out = list(shapes[0])
    out.insert(int(p.get("Axis", "0")), len(shapes))
    return tuple(out)


def matrix_diag(p, shapes) -> Shape:
    return tuple(shapes[0]) + (shapes[0][-1],)


def matrix_diag_part(p, shapes) -> Shape:
    return tuple(shapes[0][:-1])


def top_k_data(p, shapes) -> Shape:
    if p.get("Reduce", "True") != "True":
        return tuple(shapes[0])
    return tuple(shapes[0][:int(p.get("BaseAxis", "0"))]) + (int(p.get("K", "1")),)


def interpolate(p, shapes) -> Shape:
    size = ints(p["OutputSize"])
    return tuple(shapes[0][:-len(size)]) + tuple(size)


def batch_matmul(p, shapes) -> Shape:
    a, b = shapes[0], shapes[-1]
    return tuple(a[:-1]) + (b[-1],)
