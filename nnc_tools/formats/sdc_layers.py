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
    depthwise_maps,
    depthwise_params,
    identity_target,
    image_augmentation,
    ints,
    one_hot,
    outshape,
    pad_out,
    pooling,
    prelu_params,
    reduce,
    reduce_axis,
    same,
    slice_out,
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
class LayerType:
    """How one layer type compiles. ``out``: (properties, input shapes) -> output shape; ``params``: -> [(short name,
    shape)] in input order; ``target``: the loss's T input shape from its input shape (a loss layer)."""

    message: Optional[str]
    args: Tuple[Arg, ...] = ()
    out: Callable = None  # type: ignore[assignment]
    params: Optional[Callable] = None
    target: Optional[Callable] = None
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
        for short, (initializer, multiplier) in self.initializers.items():
            filled.update({f"{short}.Initializer": initializer, f"{short}.InitializerMultiplier": multiplier})
        return {**filled, **properties}


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
# Parameters' initializers as the catalogue has them when a project omits them
_BIAS = {"b": ("Constant", "0.0")}
_BINARY = {"Wb": ("Constant", "0.0"), **_BIAS}
ELEMENTWISE = ("Abs", "Exp", "Log", "Sigmoid", "Tanh", "Round", "Sign", "BinarySigmoid", "BinaryTanh", "Identity",
               "Unlink", "Sin", "Cos", "Sqrt", "Square", "SoftSign", "SoftPlus", "LogSigmoid", "TanhShrink", "Sinc",
               "Swish", "Mish", "GELU", "ReLU6", "HardSigmoid", "HardTanh", "SELU", "CELU", "CReLU", "Ceil", "Floor",
               "LogicalNot")
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
                               "Padding:pad Strides:stride Dilation:dilation Multiplier:multiplier BaseAxis:base_axis:axis=0",
                               convolution(depthwise_maps), params=depthwise_params),
    "Deconvolution": _t("deconvolution_param", _CONV.replace("=*ConvolutionPaddingSize", "=0,0"), deconvolution,
                        params=deconv_params, defaults={"OutMaps": "16", "KernelShape": "5,5", "WithBias": "True"},
                        initializers={"W": ("NormalConvolutionHeForward", "1.0"), **_BIAS}),
    "MaxPooling": _t("max_pooling_param", _POOL, pooling),
    "AveragePooling": _t("average_pooling_param", _POOL + " IncludingPad:including_pad=True", pooling),
    "SumPooling": _t("sum_pooling_param", _POOL, pooling),
    "Unpooling": _t("unpooling_param", "KernelShape:kernel", unpooling),
    "BatchNormalization": _t("batch_normalization_param",
                             "Axes:axes:axis=0 DecayRate:decay_rate=0.9 Epsilon:eps=0.0001 BatchStat:batch_stat=True",
                             params=bn_params, at_test={"BatchStat": "False"},
                             initializers={"beta": ("Constant", "0.0"), "gamma": ("Constant", "1.0"),
                                           "mean": ("Constant", "0.0"), "var": ("Constant", "0.0")}),
    "PReLU": _t("prelu_param", "BaseAxis:base_axis:axis=0", params=prelu_params, defaults={"Shared": "False"},
                initializers={"slope": ("Constant", "0.25")}),
    "ReLU": _t("relu_param", "InPlace:inplace=*AutoInPlaceOnce"),
    "LeakyReLU": _t("leaky_relu_param", "Alpha:alpha=0.1 InPlace:inplace=*AutoInPlaceOnce"),
    "ELU": _t("elu_param", "Alpha:alpha=1.0"),
    "Softmax": _t("softmax_param", "Axis:axis:axis=0"),
    "Dropout": _t("dropout_param", "P:p=0.5 Seed:seed=-1", skip_at_test=True, skip_at_inspection=True),
    "Concatenate": _t("concatenate_param", "Axis:axis:axis=0", concatenate),
    "Reshape": _t("reshape_param", "OutShape:shape:batch", outshape),
    "Broadcast": _t("broadcast_param", "OutShape:shape:batch", outshape),
    "Transpose": _t("transpose_param", "Axes:axes:axis", transpose, extra={"zero_first": "axes"}),
    "Flip": _t("flip_param", "Axes:axes:axis"),
    "Slice": _t("slice_param", "Start:start Stop:stop Step:step", slice_out),
    "Pad": _t("pad_param", "PadWidth:pad_width Mode:mode ConstantValue:constant_value", pad_out),
    "OneHot": _t("one_hot_param", "Shape:shape", one_hot),
    "Mean": _t("mean_param", "Axes:axes:axis KeepDims:keep_dims", reduce),
    "Sum": _t("sum_param", "Axes:axes:axis KeepDims:keep_dims", reduce),
    "Max": _t("max_param", "Axes:axes:axis KeepDims:keep_dims WithIndex:with_index OnlyIndex:only_index", reduce),
    "Min": _t("min_param", "Axes:axes:axis KeepDims:keep_dims WithIndex:with_index OnlyIndex:only_index", reduce),
    "RandomShift": _t("random_shift_param", "Shift:shifts BorderMode:border_mode BaseAxis:base_axis:axis=0 Seed:seed",
                      skip_at_test=True, skip_at_inspection=True),
    "RandomFlip": _t("random_flip_param", "Axes:axes:axis BaseAxis:base_axis:axis=0 Seed:seed",
                     skip_at_test=True, skip_at_inspection=True),
    "ImageAugmentation": _t("image_augmentation_param",
                            "Shape:shape Pad:pad=0,0 MinScale:min_scale MaxScale:max_scale Angle:angle "
                            "AspectRatio:aspect_ratio Distortion:distortion FlipLR:flip_lr FlipUD:flip_ud "
                            "Brightness:brightness BrightnessEach:brightness_each Contrast:contrast "
                            "ContrastCenter:contrast_center ContrastEach:contrast_each Noise:noise Seed:seed",
                            image_augmentation, skip_at_test=True, skip_at_inspection=True),
    "HuberLoss": _t("huber_loss_param", "Delta:delta=1.0", same, target=identity_target),
    "CategoricalCrossEntropy": _t("categorical_cross_entropy_param", "Axis:axis:axis=0", reduce_axis,
                                  target=class_target),
    "SoftmaxCrossEntropy": _t("softmax_cross_entropy_param", "Axis:axis:axis=0", reduce_axis, target=class_target),
    "TopNError": _t("top_n_error_param", "Axis:axis:axis=0 N:n=1", reduce_axis, target=class_target),
    "KLMultinomial": _t("kl_multinomial_param", "BaseAxis:base_axis:axis=0",
                        lambda p, s: tuple(s[0][:int(p.get("BaseAxis", "0"))]) + (1,)),
    "RepeatStart": _t("repeat_param"),
    "RecurrentInput": _t("recurrent_param", "Axis:axis:axis", lambda p, s: tuple(
        n for i, n in enumerate(s[0]) if i != int(p.get("Axis", "0")))),
    "RecurrentOutput": _t("recurrent_param", "Axis:axis:axis", lambda p, s: tuple(
        s[0][:int(p.get("Axis", "0"))]) + (int(p["Length"]),) + tuple(s[0][int(p.get("Axis", "0")):])),
    "Delay": _t("recurrent_param", out=lambda p, s: tuple(ints(p["Size"]))),
    "RepeatEnd": _t("repeat_param"),  # its times: the RepeatStart's Times
    "VATNoise": _t("vat_noise_param", "BaseAxis:base_axis:axis=0 Epsilon:eps"),
}
for _name in ELEMENTWISE:
    LAYER_TYPES.setdefault(_name, _t(None))
for _name in TWO_INPUTS:
    LAYER_TYPES.setdefault(_name, _t(f"{_name.lower()}_param" if _name in ("Add2",) else None,
                                     "InPlace:inplace" if _name == "Add2" else "", broadcast))
for _name, _message in SCALAR.items():
    LAYER_TYPES.setdefault(_name, _t(_message, "Value:val"))
for _name in ("SquaredError", "AbsoluteError", "BinaryCrossEntropy", "SigmoidCrossEntropy", "BinaryError",
              "EpsilonInsensitiveLoss"):
    LAYER_TYPES.setdefault(_name, _t(None, out=same, target=identity_target))


def layer_type(name: str) -> Optional[LayerType]:
    return LAYER_TYPES.get(name)
