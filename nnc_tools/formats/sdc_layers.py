"""NNC's layer types as NNC's converter compiles them: each type's NNabla function, the ``*_param`` fields its properties
fill, its parameters' shapes and its output shape. Shapes here leave out the batch axis (NNC's ``Size``/``Output``).

Facts read from NNC's layer catalogue (``settings/NNabla/layer_component/*/*.txt`` and the editor's
``nnabla-corelib-defs.js``) and checked against the converter's output for NNC's samples; written here in our form.
A property's axis counts from the first non-batch axis: the converter adds 1 (``AXIS``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from .sdc_shapes import (
    affine_out,
    affine_params,
    batch_matmul,
    binary_affine_params,
    binary_conv_params,
    bn_params,
    broadcast,
    class_target,
    concatenate,
    conv_params,
    convolution,
    deconv_params,
    deconvolution,
    depthwise_deconv_params,
    depthwise_deconvolution,
    depthwise_maps,
    depthwise_params,
    double_axis,
    embed,
    embed_params,
    global_pooling,
    identity_target,
    image_augmentation,
    interpolate,
    ints,
    matrix_diag,
    matrix_diag_part,
    mean_subtraction_params,
    one_hot,
    outshape,
    pad_out,
    pooling,
    prelu_params,
    reduce,
    reduce_axis,
    same,
    slice_out,
    stack,
    tile,
    top_k_data,
    transpose,
    unpooling,
)

AXIS, BATCH, ZERO_FIRST = "axis", "batch", "zero_first"  # +1 per axis; a leading -1 (batch); a leading 0 (batch axis)


@dataclass(frozen=True)
class Arg:
    """A property and the ``*_param`` field it fills (``AXIS``/``BATCH``/``ZERO_FIRST``: how the converter shifts it)."""

    prop: str
    field: str
    how: str = ""
    default: Optional[str] = None  # the catalogue's value when a project omits the property


@dataclass(frozen=True)
class Pin:
    """A data input the converter fills when no link feeds it: a ``<layer>_<short>`` variable from the dataset variable
    ``<short>.Dataset`` names, or from ``<short>.Generator``; ``target``: a loss's (the runtime network drops it)."""

    short: str
    dataset: str = ""
    generator: str = "None"
    multiplier: str = "1.0"
    shape: Callable = identity_target  # its shape from the layer's first input's
    target: bool = False


@dataclass(frozen=True)
class LayerType:
    """How one layer type compiles. ``out``: (properties, input shapes) -> output shape; ``params``: -> [(short name,
    shape)] in input order; ``pins``: the data inputs after the linked ones, in pin order (a loss: its target)."""

    message: Optional[str]
    args: Tuple[Arg, ...] = ()
    out: Callable = None  # type: ignore[assignment]
    params: Optional[Callable] = None
    pins: Tuple[Pin, ...] = ()
    function: Optional[str] = None  # NNabla's type name when it is not the layer's
    skip_at_test: bool = False  # dropped from the validation network NNC derives (SkipAtTest, default True)
    skip_at_inspection: bool = False  # dropped from the runtime network (SkipAtInspection, default True)
    extra: Dict[str, str] = field(default_factory=dict)
    at_test: Dict[str, str] = field(default_factory=dict)  # property values in a derived validation/runtime network
    # the catalogue's values for properties a project omits (NNC's converter fills them in), beside the args' defaults;
    # parameters' initializers: short name -> (initializer, multiplier)
    defaults: Dict[str, str] = field(default_factory=dict)
    initializers: Dict[str, Tuple[str, str]] = field(default_factory=dict)

    def omitted(self, properties: Dict[str, str]) -> Dict[str, str]:
        """``properties`` with the catalogue's value of every property it omits (NNC's converter does the same)."""
        filled = {a.prop: a.default for a in self.args if a.default is not None}
        filled.update(self.defaults)
        for pin in self.pins:
            filled.update({f"{pin.short}.Dataset": pin.dataset, f"{pin.short}.Generator": pin.generator,
                           f"{pin.short}.GeneratorMultiplier": pin.multiplier})
        for short, (initializer, multiplier) in self.initializers.items():
            filled.update({f"{short}.Initializer": initializer, f"{short}.InitializerMultiplier": multiplier})
        return {**filled, **properties}

    @property
    def is_loss(self) -> bool:
        return any(pin.target for pin in self.pins)


_LOSS_OUT = {"SquaredError": same, "AbsoluteError": same, "BinaryCrossEntropy": same, "SigmoidCrossEntropy": same,
             "HuberLoss": same, "EpsilonInsensitiveLoss": same, "BinaryError": same,
             "CategoricalCrossEntropy": reduce_axis, "SoftmaxCrossEntropy": reduce_axis, "TopNError": reduce_axis}


def _a(spec: str, message: str) -> Tuple[Arg, ...]:
    """``Prop:field[:how][=default]`` items, space separated."""
    out = []
    for item in spec.split():
        body, _, default = item.partition("=")
        prop, name, *how = body.split(":")
        out.append(Arg(prop, f"{message}.{name}", how[0] if how else "", default or None))
    return tuple(out)


def _t(message: Optional[str], args: str = "", out: Callable = same, **kw) -> LayerType:
    return LayerType(message, _a(args, message) if message else (), out, **kw)


_CONV = ("Padding:pad=*ConvolutionPaddingSize Strides:stride=1,1 Dilation:dilation=1,1 Group:group=1 "
         "ChannelLast:channel_last BaseAxis:base_axis:axis=0")
_POOL = ("KernelShape:kernel=2,2 Strides:stride=*KernelShape IgnoreBorder:ignore_border=True Padding:pad=0,0 "
         "ChannelLast:channel_last")
_LOSS = (Pin("T", "y", target=True),)  # a loss's target: the dataset's y unless the project names another
_CLASS_LOSS = (Pin("T", "y", shape=class_target, target=True),)
_REDUCE = "Axes:axes:axis=0 KeepDims:keep_dims=False"
_INDEX = " WithIndex:with_index=False OnlyIndex:only_index=False"
# Parameters' initializers as the catalogue has them when a project omits them
_BIAS = {"b": ("Constant", "0.0")}
_BINARY = {"Wb": ("Constant", "0.0"), **_BIAS}
_BN_INIT = {"beta": ("Constant", "0.0"), "gamma": ("Constant", "1.0"), "mean": ("Constant", "0.0"), "var": ("Constant", "0.0")}
ELEMENTWISE = ("Abs", "Exp", "Log", "Sigmoid", "Tanh", "Round", "BinarySigmoid", "BinaryTanh", "Identity",
               "Unlink", "Sin", "Cos", "SoftSign", "SoftPlus", "LogSigmoid", "TanhShrink", "Sinc",
               "Swish", "Mish", "GELU", "ReLU6", "HardSigmoid", "HardTanh", "Ceil", "Floor",
               "LogicalNot", "Tan", "Sinh", "Cosh", "ASin", "ACos", "ATan", "ASinh", "ACosh", "ATanh", "IsNaN", "IsInf",
               "ResetNaN", "ResetInf", "BatchInv")
RIGHT_PIN = ("Sub2", "Div2", "Pow2", "Greater", "GreaterEqual", "Less", "LessEqual")  # R: a constant 1 unless linked
_CONSTANT_R = (Pin("R", "", "Constant", "1.0"),)
TWO_INPUTS = ("Add2", "Sub2", "Mul2", "Div2", "Pow2", "Maximum2", "Minimum2", "Equal", "NotEqual", "Greater",
              "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr", "LogicalXor")
SCALAR = {"AddScalar": "add_scalar_param", "MulScalar": "mul_scalar_param", "RSubScalar": "r_sub_scalar_param",
          "RDivScalar": "r_div_scalar_param", "PowScalar": "pow_scalar_param", "RPowScalar": "r_pow_scalar_param",
          "MaximumScalar": "maximum_scalar_param", "MinimumScalar": "minimum_scalar_param",
          "EqualScalar": "equal_scalar_param", "NotEqualScalar": "not_equal_scalar_param",
          "GreaterScalar": "greater_scalar_param", "GreaterEqualScalar": "greater_equal_scalar_param",
          "LessScalar": "less_scalar_param", "LessEqualScalar": "less_equal_scalar_param",
          "LogicalAndScalar": "logical_and_scalar_param", "LogicalOrScalar": "logical_or_scalar_param",
          "LogicalXorScalar": "logical_xor_scalar_param"}

LAYER_TYPES: Dict[str, LayerType] = {
    "Affine": _t("affine_param", "BaseAxis:base_axis:axis=0", affine_out, params=affine_params,
                 defaults={"OutShape": "100", "WithBias": "True"},
                 initializers={"W": ("NormalAffineGlorot", "1.0"), **_BIAS}),
    "BinaryConnectAffine": _t("binary_connect_affine_param", "BaseAxis:base_axis:axis=0", affine_out,
                              params=binary_affine_params, defaults={"OutShape": "100", "WithBias": "True"},
                              initializers={"W": ("UniformAffineGlorot", "1.0"), **_BINARY}),
    "BinaryWeightAffine": _t("binary_weight_affine_param", "BaseAxis:base_axis:axis=0", affine_out,
                             params=binary_affine_params, defaults={"OutShape": "100", "WithBias": "True"},
                             initializers={"W": ("UniformAffineGlorot", "1.0"), **_BINARY}),
    "Convolution": _t("convolution_param", _CONV, convolution(lambda p, s: int(p["OutMaps"])), params=conv_params,
                      defaults={"OutMaps": "16", "KernelShape": "3,3", "BorderMode": "same", "WithBias": "True"},
                      initializers={"W": ("NormalConvolutionGlorot", "1.0"), **_BIAS}),
    "BinaryConnectConvolution": _t("binary_connect_convolution_param", _CONV,
                                   convolution(lambda p, s: int(p["OutMaps"])), params=binary_conv_params,
                                   defaults={"OutMaps": "16", "KernelShape": "5,5", "BorderMode": "valid",
                                             "WithBias": "True"},
                                   initializers={"W": ("UniformConvolutionGlorot", "1.0"), **_BINARY}),
    "BinaryWeightConvolution": _t("binary_weight_convolution_param", _CONV,
                                  convolution(lambda p, s: int(p["OutMaps"])), params=binary_conv_params,
                                  defaults={"OutMaps": "16", "KernelShape": "5,5", "BorderMode": "valid",
                                            "WithBias": "True"},
                                  initializers={"W": ("UniformConvolutionGlorot", "1.0"), **_BINARY}),
    "DepthwiseConvolution": _t("depthwise_convolution_param",
                               "Padding:pad=*ConvolutionPaddingSize Strides:stride=1,1 Dilation:dilation=1,1 "
                               "Multiplier:multiplier=1 BaseAxis:base_axis:axis=0",
                               convolution(depthwise_maps), params=depthwise_params,
                               defaults={"KernelShape": "5,5", "BorderMode": "valid", "WithBias": "True"},
                               initializers={"W": ("NormalConvolutionGlorot", "1.0"), **_BIAS}),
    "Deconvolution": _t("deconvolution_param", _CONV.replace("=*ConvolutionPaddingSize", "=0,0"), deconvolution,
                        params=deconv_params, defaults={"OutMaps": "16", "KernelShape": "5,5", "WithBias": "True"},
                        initializers={"W": ("NormalConvolutionHeForward", "1.0"), **_BIAS}),
    "MaxPooling": _t("max_pooling_param", _POOL, pooling),
    "AveragePooling": _t("average_pooling_param", _POOL + " IncludingPad:including_pad=True", pooling),
    "SumPooling": _t("sum_pooling_param", _POOL, pooling),
    "Unpooling": _t("unpooling_param", "KernelShape:kernel=2,2", unpooling),
    "BatchNormalization": _t("batch_normalization_param",
                             "Axes:axes:axis=0 DecayRate:decay_rate=0.9 Epsilon:eps=0.0001 BatchStat:batch_stat=True",
                             params=bn_params, at_test={"BatchStat": "False"},
                             initializers=_BN_INIT),
    "PReLU": _t("prelu_param", "BaseAxis:base_axis:axis=0", params=prelu_params, defaults={"Shared": "False"},
                initializers={"slope": ("Constant", "0.25")}),
    "ReLU": _t("relu_param", "InPlace:inplace=*AutoInPlaceOnce"),
    "LeakyReLU": _t("leaky_relu_param", "Alpha:alpha=0.1 InPlace:inplace=*AutoInPlaceOnce"),
    "ELU": _t("elu_param", "Alpha:alpha=1.0"),
    "Softmax": _t("softmax_param", "Axis:axis:axis=0"),
    "Dropout": _t("dropout_param", "P:p=0.5 Seed:seed=-1", skip_at_test=True, skip_at_inspection=True),
    "Concatenate": _t("concatenate_param", "Axis:axis:axis=0", concatenate),
    "Reshape": _t("reshape_param", "OutShape:shape:batch=100", outshape),
    "Broadcast": _t("broadcast_param", "OutShape:shape:batch=*Input", outshape),
    "Transpose": _t("transpose_param", "Axes:axes:axis=0,1,2", transpose, extra={"zero_first": "axes"}),
    "Flip": _t("flip_param", "Axes:axes:axis=0"),
    "Slice": _t("slice_param", "Start:start=0,0,0 Stop:stop=*Input Step:step=1,1,1", slice_out),
    "Pad": _t("pad_param", "PadWidth:pad_width=0,0,0,0 Mode:mode=constant ConstantValue:constant_value=0.0", pad_out),
    "OneHot": _t("one_hot_param", "Shape:shape=100", one_hot),
    "Mean": _t("mean_param", _REDUCE, reduce),
    "Sum": _t("sum_param", _REDUCE, reduce),
    "Prod": _t("prod_param", _REDUCE, reduce),
    "Max": _t("max_param", _REDUCE + _INDEX, reduce),
    "Min": _t("min_param", _REDUCE + _INDEX, reduce),
    "RandomShift": _t("random_shift_param", "Shift:shifts=0,0 BorderMode:border_mode=nearest "
                      "BaseAxis:base_axis:axis=0 Seed:seed=-1", skip_at_test=True, skip_at_inspection=True),
    "RandomFlip": _t("random_flip_param", "Axes:axes:axis=0 BaseAxis:base_axis:axis=0 Seed:seed=-1",
                     skip_at_test=True, skip_at_inspection=True),
    "ImageAugmentation": _t("image_augmentation_param",
                            "Shape:shape=*Input Pad:pad=0,0 MinScale:min_scale=1.0 MaxScale:max_scale=1.0 "
                            "Angle:angle=0.0 AspectRatio:aspect_ratio=1.0 Distortion:distortion=0.0 "
                            "FlipLR:flip_lr=False FlipUD:flip_ud=False Brightness:brightness=0.0 "
                            "BrightnessEach:brightness_each=False Contrast:contrast=1.0 "
                            "ContrastCenter:contrast_center=0.5 ContrastEach:contrast_each=False Noise:noise=0.0 "
                            "Seed:seed=-1", image_augmentation, skip_at_test=True, skip_at_inspection=True),
    "HuberLoss": _t("huber_loss_param", "Delta:delta=1.0", same, pins=_LOSS),
    "EpsilonInsensitiveLoss": _t("epsilon_insensitive_loss_param", "Epsilon:epsilon=0.0", same, pins=_LOSS),
    "CategoricalCrossEntropy": _t("categorical_cross_entropy_param", "Axis:axis:axis=0", reduce_axis,
                                  pins=_CLASS_LOSS),
    "SoftmaxCrossEntropy": _t("softmax_cross_entropy_param", "Axis:axis:axis=0", reduce_axis, pins=_CLASS_LOSS),
    "TopNError": _t("top_n_error_param", "Axis:axis:axis=0 N:n=1", reduce_axis, pins=_CLASS_LOSS),
    "KLMultinomial": _t("kl_multinomial_param", "BaseAxis:base_axis:axis=0",
                        lambda p, s: tuple(s[0][:int(p.get("BaseAxis", "0"))]) + (1,),
                        pins=(Pin("q", "y", target=True),)),
    "RepeatStart": _t("repeat_param"),
    "RecurrentInput": _t("recurrent_param", "Axis:axis:axis", lambda p, s: tuple(
        n for i, n in enumerate(s[0]) if i != int(p.get("Axis", "0")))),
    "RecurrentOutput": _t("recurrent_param", "Axis:axis:axis", lambda p, s: tuple(
        s[0][:int(p.get("Axis", "0"))]) + (int(p["Length"]),) + tuple(s[0][int(p.get("Axis", "0")):])),
    "Delay": _t("recurrent_param", out=lambda p, s: tuple(ints(p["Size"]))),
    "RepeatEnd": _t("repeat_param"),  # its times: the RepeatStart's Times
    "VATNoise": _t("vat_noise_param", "BaseAxis:base_axis:axis=0 Epsilon:eps=0.0001", pins=(Pin("Buf", "buf"),)),
}
LAYER_TYPES.update({
    "Sign": _t("sign_param", "Alpha:alpha=0.0"),
    "SELU": _t("selu_param", "Scale:scale=1.05070098735548 Alpha:alpha=1.673263242354377"),
    "CELU": _t("celu_param", "Alpha:alpha=1.0 Axis:axis:axis=0", double_axis),
    "CReLU": _t("crelu_param", "Axis:axis:axis=0", double_axis),
    "GlobalAveragePooling": _t(None, out=global_pooling),
    "DepthwiseDeconvolution": _t("depthwise_deconvolution_param", "Padding:pad=0,0 Strides:stride=1,1 "
                                 "Dilation:dilation=1,1 Divisor:divisor=1 BaseAxis:base_axis:axis=0",
                                 depthwise_deconvolution, params=depthwise_deconv_params,
                                 defaults={"KernelShape": "5,5", "WithBias": "True"},
                                 initializers={"W": ("NormalConvolutionHeForward", "1.0"), **_BIAS}),
    "Embed": _t(None, out=embed, params=embed_params, defaults={"NumClass": "100", "Shape": "32"},
                initializers={"W": ("Uniform", "1.0")}),
    "FusedBatchNormalization": _t("fused_batch_normalization_param",
                                  "Axes:axes:axis=0 DecayRate:decay_rate=0.9 Epsilon:eps=0.0001 "
                                  "BatchStat:batch_stat=True Nonlinearity:nonlinearity=relu",
                                  params=bn_params, at_test={"BatchStat": "False"},
                                  initializers=_BN_INIT),
    "MeanSubtraction": _t("mean_subtraction_param", "BaseAxis:base_axis:axis=0 UpdateRunningMean:update_running_mean="
                          "True", params=mean_subtraction_params, at_test={"UpdateRunningMean": "False"},
                          initializers={"mean": ("Constant", "0.0"), "t": ("Constant", "0.0")}),
    "FixedPointQuantize": _t("fixed_point_quantize_param", "Sign:sign=True N:n=8 Delta:delta=0.0625 "
                             "STEFineGrained:ste_fine_grained=True"),
    "Pow2Quantize": _t("pow2_quantize_param", "Sign:sign=True WithZero:with_zero=True N:n=8 M:m=1 "
                       "STEFineGrained:ste_fine_grained=True"),
    "FFT": _t("fft_param", "SignalNDim:signal_ndim=2 Normalized:normalized=False"),
    "IFFT": _t("ifft_param", "SignalNDim:signal_ndim=2 Normalized:normalized=False"),
    "BatchMatmul": _t(None, out=batch_matmul),
    "AddN": _t(None, out=broadcast),
    "MulN": _t(None, out=broadcast),
    "ATan2": _t(None, out=broadcast, pins=(Pin("x", "", "Constant", "1.0"),)),
    "BroadcastTo": _t("broadcast_to_param", "Axis:axis:axis=-1", pins=(Pin("y", "", "Constant", "1.0"),)),
    "Tile": _t("tile_param", "Reps:reps=2", tile),
    "Shift": _t("shift_param", "Shift:shifts=0,0 BorderMode:border_mode=nearest"),
    "Stack": _t("stack_param", "Axis:axis:axis=0", stack),
    "MatrixDiag": _t(None, out=matrix_diag),
    "MatrixDiagPart": _t(None, out=matrix_diag_part),
    "ClipGradByValue": _t(None, pins=(Pin("min", "", "Constant", "-1.0"), Pin("Max", "", "Constant", "1.0"))),
    "ClipGradByNorm": _t("clip_grad_by_norm_param", "ClipNorm:clip_norm=1.0 Axes:axes:axis=0"),
    "TopKData": _t("top_k_data_param", "K:k=1 Abs:abs=False Reduce:reduce=True BaseAxis:base_axis:axis=0",
                   top_k_data),
    "TopKGrad": _t("top_k_grad_param", "K:k=1 Abs:abs=False BaseAxis:base_axis:axis=0"),
    "Sort": _t("sort_param", "Axis:axis:axis=0 Reverse:reverse=False WithIndex:with_index=False "
               "OnlyIndex:only_index=False"),
    "Prune": _t("prune_param", "Rate:rate=0.9"),
    "Interpolate": _t("interpolate_param", "OutputSize:output_size=32,32 Mode:mode=linear "
                      "AlignCorners:align_corners=True", interpolate),
    "NmsDetection2d": _t("nms_detection2d_param", "Thresh:thresh=0.5 NMS:nms=0.45 NMSPerClass:nms_per_class=True"),
    "RandomCrop": _t("random_crop_param", "Shape:shape=*Input BaseAxis:base_axis:axis=0 Seed:seed=-1",
                     image_augmentation),
})
for _name in ELEMENTWISE:
    LAYER_TYPES.setdefault(_name, _t(None))
for _name in TWO_INPUTS:
    LAYER_TYPES.setdefault(_name, _t(f"{_name.lower()}_param" if _name in ("Add2",) else None,
                                     "InPlace:inplace=*AutoInPlace" if _name == "Add2" else "", broadcast,
                                     pins=_CONSTANT_R if _name in RIGHT_PIN else ()))
for _name, _message in SCALAR.items():  # each Value's default: the operation's identity (PowScalar: a square)
    _value = "2.0" if _name == "PowScalar" else "1.0" if _name in ("MulScalar", "RDivScalar", "RPowScalar",
                                                                   "MinimumScalar") else "0.0"
    LAYER_TYPES.setdefault(_name, _t(_message, f"Value:val={_value}"))
for _name in ("SquaredError", "AbsoluteError", "BinaryCrossEntropy", "SigmoidCrossEntropy", "BinaryError"):
    LAYER_TYPES.setdefault(_name, _t(None, out=same, pins=_LOSS))


def layer_type(name: str) -> Optional[LayerType]:
    return LAYER_TYPES.get(name)
