"""What NNabla's functions are, by type name, for those who read a network without running it: which draw random
numbers, which are losses (of a classifier, per class or per output), which read a classifier's scores, which give a
sample's result from that sample alone. One home for each list: retarget, the frozen-prefix cache, data parallelism,
monitors and the checks before a run read them."""

from __future__ import annotations

# Functions that draw random numbers: never part of a cached prefix, and drawn for the whole batch in data parallelism.
RANDOM_FUNCTIONS = frozenset({
    "Dropout", "RandomShift", "RandomFlip", "RandomCrop", "RandomErase", "ImageAugmentation", "Rand", "Randn", "Randint",
    "RandomChoice", "MixUp", "Cutout", "GaussianNoise",
})



def draws_random(f) -> bool:
    """Whether a function (as the project states it) draws random numbers: every type above, except an
    ImageAugmentation with every random setting off (one scale, no flip, rotation, distortion, brightness, contrast or
    noise): that one is a fixed resize, as NNC's validation networks use it, and gives the same output every time."""
    if f.type != "ImageAugmentation":
        return f.type in RANDOM_FUNCTIONS
    p = f.image_augmentation_param
    return bool(p.flip_lr or p.flip_ud or p.min_scale != p.max_scale or p.angle or p.distortion or p.brightness or p.noise
                or p.aspect_ratio not in (0, 1) or p.contrast not in (0, 1))


# Loss functions: their first input is the network's output, the others are targets (labels), not images.
LOSS_FUNCTIONS = frozenset({
    "CategoricalCrossEntropy", "SoftmaxCrossEntropy", "BinaryCrossEntropy", "SquaredError", "SigmoidCrossEntropy",
    "AbsoluteError", "HuberLoss", "EpsilonInsensitiveLoss", "KLMultinomial",
})

# Losses whose first input is a class-score vector per sample (a Softmax's output, or logits): accuracy can be read there.
CLASS_SCORE_LOSSES = frozenset({"CategoricalCrossEntropy", "SoftmaxCrossEntropy"})

# Losses whose labels are 0/1 per output (a Sigmoid head): a CSV's class indices do not fit them.
PER_OUTPUT_LOSSES = frozenset({"BinaryCrossEntropy", "SigmoidCrossEntropy"})

# Losses of a classifier: the first input is its per-class output (scores, probabilities or logits).
CLASSIFIER_LOSSES = CLASS_SCORE_LOSSES | PER_OUTPUT_LOSSES

# Functions that read a head's scores and give a value per sample (NNC's error monitors): the classes end there.
SCORE_READERS = frozenset({"TopNError", "BinaryError"})

# Function types whose output for one sample depends only on that sample (given the checks in ``slicing.per_sample``).
PER_SAMPLE = frozenset({
    "Affine", "Convolution", "Deconvolution", "DepthwiseConvolution", "DepthwiseDeconvolution", "MaxPooling",
    "AveragePooling", "SumPooling", "Unpooling", "GlobalAveragePooling", "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU",
    "CELU", "CReLU", "PReLU", "GELU", "Swish", "Sigmoid", "Tanh", "Softplus", "Softsign", "HardSigmoid", "HardTanh",
    "Identity", "Abs", "Exp", "Log", "Add2", "Sub2", "Mul2", "Div2", "Pow2", "Maximum2", "Minimum2", "AddScalar",
    "MulScalar", "PowScalar", "RSubScalar", "RDivScalar", "MaximumScalar", "MinimumScalar", "Softmax", "LogSoftmax",
    "SoftmaxCrossEntropy", "CategoricalCrossEntropy", "SigmoidCrossEntropy", "BinaryCrossEntropy", "SquaredError",
    "AbsoluteError", "HuberLoss", "EpsilonInsensitiveLoss", "KLMultinomial", "BatchNormalization", "Concatenate", "Split",
    "Reshape", "Transpose",
})
