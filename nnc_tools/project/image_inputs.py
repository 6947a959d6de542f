"""An NNC image classifier's input preprocessing fitted to the user's images, as NNC's own ImageNet transfer-learning
plugin fits the published models (and done for any project built the same way).

NNC's ImageNet projects read raw 0–255 pixels (``no_image_normalization``) and preprocess inside the network: the
training network ``InputX`` (3×480×480) → ``MulScalarX`` → ``AddScalarX`` → ``ImageAugmentationX`` (a random crop,
scale and flip to 3×224×224); the validation networks ``Input`` (3×320×320) → ``MulScalar`` → ``AddScalar`` → ``Slice``
(the centre 280×280) → ``ImageAugmentation`` (scaled to 224×224). The pixel scaling (``MulScalar``/``AddScalar``) is
the network's own and is kept as it is. What changes with the user's images:

- every input, and the per-pixel steps after it, take the images' height and width (channels stay: a grey image for
  a colour network is refused by the image check that follows);
- a training augmentation keeps its crop size; its scale range moves so that its smallest scale still shows the whole
  image (``min_scale = sqrt(crop_h·crop_w / (H·W))``, NNC's plugin's rule) and its largest keeps the project's ratio
  to it;
- a ``Slice`` crops the same centre share of the image as before (280/320 = 0.875, NNC's plugin's default crop
  ratio) and the fixed augmentation after it scales that crop to the network's size;
- a runtime network whose preprocessing draws random crops and flips (NNC's ImageNet projects' ``Runtime`` does:
  scale 0.7–2.5 with ``flip_lr``) gets the validation network's centre crop instead, as NNC's plugin rebuilds it from
  the validation network: otherwise ``evaluate``, ``nnabla_cli infer`` and the exported model give a different answer
  for the same image each time.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

from ..formats.functions import draws_random
from ..formats.schema import network_of, nnabla_pb2

# Functions that map each pixel on its own and keep the shape: the pixel scaling NNC's projects do before augmentation
PER_PIXEL = {"MulScalar", "AddScalar", "PowScalar", "RSubScalar", "RDivScalar", "Identity", "Abs"}


def _chain(network: nnabla_pb2.Network, start: str) -> List[nnabla_pb2.Function]:
    """The preprocessing functions from input ``start``: per-pixel steps and a Slice, up to and including the first
    ImageAugmentation, or else the last Slice; [] when the input leads to neither that way."""
    chain, current = [], start
    while True:
        users = [f for f in network.function if current in f.input]
        if len(users) != 1 or users[0].input[0] != current or users[0].type not in PER_PIXEL | {"Slice", "ImageAugmentation"}:
            break
        chain.append(users[0])
        if users[0].type == "ImageAugmentation":
            break
        current = users[0].output[0]
    last = max((i for i, f in enumerate(chain) if f.type in ("Slice", "ImageAugmentation")), default=-1)
    return chain[:last + 1]


def _image_inputs(network: nnabla_pb2.Network) -> List[str]:
    """Variables no function makes and no parameter is, of shape (batch, channels, height, width)."""
    made = {o for f in network.function for o in f.output}
    return [v.name for v in network.variable if v.type != "Parameter" and v.name not in made and len(v.shape.dim) == 4]


def preprocessed_inputs(proto: nnabla_pb2.NNablaProtoBuf) -> Dict[str, List[str]]:
    """Per network, its image inputs that lead through per-pixel steps (and a Slice) to an ImageAugmentation."""
    found = {}
    for network in proto.network:
        inputs = [name for name in _image_inputs(network) if _chain(network, name)]
        if inputs:
            found[network.name] = inputs
    return found


def fit_image_inputs(proto: nnabla_pb2.NNablaProtoBuf, shapes: Dict[str, Sequence[int]], crop_ratio: float = 0.875) -> List[str]:
    """Fit every preprocessed image input to ``shapes[network name]`` ((channels,) height, width of its images), as the
    module docstring says; the lines saying what changed. Networks whose inputs already fit are left alone."""
    said = []
    for network in proto.network:
        shape = shapes.get(network.name)
        if shape is None:
            continue
        height, width = int(shape[-2]), int(shape[-1])
        variables = {v.name: v for v in network.variable}
        for name in _image_inputs(network):
            chain = _chain(network, name)
            before = list(variables[name].shape.dim)
            if not chain or before[2:] == [height, width]:
                continue
            variables[name].shape.dim[2:] = [height, width]
            size = list(variables[chain[-1].output[0]].shape.dim)
            steps = "".join(_fit_step(f, variables, crop_ratio) for f in chain)
            if chain[-1].type == "Slice" and list(variables[chain[-1].output[0]].shape.dim) != size:
                steps += _resize_after(network, chain[-1], size)
            said.append(f"{network.name}: input {name} {'x'.join(map(str, before[1:]))} -> {before[1]}x{height}x{width}"
                        + steps)
    return said


def _resize_after(network: nnabla_pb2.Network, crop: nnabla_pb2.Function, size: List[int]) -> str:
    """A fixed ImageAugmentation after ``crop`` (a Slice that cut a network-sized window before and now cuts the
    centre of a smaller image): it scales the crop to ``size``, the shape the rest of the network was built for."""
    variables = {v.name: v for v in network.variable}
    cropped = variables[crop.output[0]]
    name = crop.output[0] + "_crop"
    while name in variables:
        name += "_"
    v = network.variable.add()
    v.CopyFrom(cropped)
    v.name = name
    cropped.shape.dim[:] = size
    h, w = int(v.shape.dim[2]), int(v.shape.dim[3])
    resize = nnabla_pb2.Function(name=_unused(network, "ImageAugmentation"), type="ImageAugmentation", input=[name],
                                 output=[crop.output[0]])
    p = resize.image_augmentation_param
    p.shape.dim[:] = size[1:]
    p.pad.dim[:] = [0, 0]
    p.min_scale = p.max_scale = math.sqrt(size[2] * size[3] / (h * w))
    p.aspect_ratio, p.contrast, p.seed = 1.0, 1.0, -1
    crop.output[0] = name
    functions = [_copy(f) for f in network.function]
    at = next(i for i, f in enumerate(functions) if f.name == crop.name) + 1
    del network.function[:]
    network.function.extend(functions[:at] + [resize] + functions[at:])
    return f", scaled {p.min_scale:.3g}x to {size[2]}x{size[3]} (a fixed ImageAugmentation added after {crop.name})"


def _unused(network: nnabla_pb2.Network, base: str) -> str:
    taken = {f.name for f in network.function} | {v.name for v in network.variable}
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _fit_step(f: nnabla_pb2.Function, variables, crop_ratio: float) -> str:
    """One preprocessing function refitted to its input's new (height, width); what it now does, for the report."""
    source = variables[f.input[0]].shape.dim
    h, w = int(source[2]), int(source[3])
    out = variables[f.output[0]].shape.dim
    if f.type in PER_PIXEL:
        out[2:] = [h, w]
        return ""
    if f.type == "Slice":
        p = f.slice_param
        ch, cw = max(1, int(h * crop_ratio)), max(1, int(w * crop_ratio))
        p.start[-2:] = [(h - ch) // 2, (w - cw) // 2]
        p.stop[-2:] = [p.start[-2] + ch, p.start[-1] + cw]
        out[2:] = [ch, cw]
        return f", centre crop {ch}x{cw}"
    p = f.image_augmentation_param
    crop_h, crop_w = int(p.shape.dim[-2]), int(p.shape.dim[-1])
    smallest = math.sqrt(crop_h * crop_w / (h * w))
    if p.min_scale == p.max_scale:
        p.min_scale = p.max_scale = smallest
        return f", scaled {smallest:.3g}x to {crop_h}x{crop_w}"
    ratio = p.max_scale / p.min_scale if p.min_scale > 0 else 1.0
    p.min_scale, p.max_scale = smallest, smallest * ratio
    return f", random scale {p.min_scale:.3g}-{p.max_scale:.3g} to {crop_h}x{crop_w}"


def _first_chain(network) -> List[nnabla_pb2.Function]:
    return next((c for c in (_chain(network, n) for n in _image_inputs(network)) if c), []) if network is not None else []


def _fixed_chain(proto: nnabla_pb2.NNablaProtoBuf):
    """The first monitor network whose preprocessing draws nothing at random, and that preprocessing; (None, [])."""
    for monitor in proto.monitor:
        other = network_of(proto, monitor.network_name)
        theirs = _first_chain(other)
        if theirs and not any(draws_random(f) for f in theirs):
            return other, theirs
    return None, []


def deterministic_runtime(proto: nnabla_pb2.NNablaProtoBuf) -> Optional[str]:
    """Give the executor's network the validation network's preprocessing when its own draws at random (see the module
    docstring); what was done, or None."""
    runtime = network_of(proto, proto.executor[0].network_name) if proto.executor else None
    mine = _first_chain(runtime)
    if not mine or not any(draws_random(f) for f in mine):
        return None
    other, theirs = _fixed_chain(proto)
    if other is None:
        return None
    _replace_chain(runtime, mine, other, theirs)
    return (f"{runtime.name}: its input drew random crops and flips ({mine[-1].name}); it now takes "
            f"{other.name}'s centre crop, as NNC's transfer plugin does, so a prediction is the same every time")


def _replace_chain(network, mine, other, theirs) -> None:
    """Swap ``mine`` (``network``'s preprocessing functions) for copies of ``theirs`` (``other``'s), wired to
    ``network``'s input and to the variable the rest of it reads."""
    start, end = mine[0].input[0], mine[-1].output[0]
    their_start, their_end = theirs[0].input[0], theirs[-1].output[0]
    shapes = {v.name: v for v in other.variable}
    taken = {v.name for v in network.variable} - {f.output[0] for f in mine}
    rename = {their_start: start, their_end: end}
    for f in theirs[:-1]:
        name = f.output[0]
        while name in taken:
            name += "_"
        rename[f.output[0]] = name
        taken.add(name)
    dropped = {f.output[0] for f in mine[:-1]}
    kept = [v for v in network.variable if v.name not in dropped]
    functions = list(network.function)
    at = functions.index(mine[0])
    rest = [f for f in functions if all(f is not m for m in mine)]
    used_names = {f.name for f in rest}
    fresh = []
    for f in theirs:
        new = nnabla_pb2.Function()
        new.CopyFrom(f)
        while new.name in used_names:
            new.name += "_"
        used_names.add(new.name)
        new.input[0], new.output[0] = rename[f.input[0]], rename[f.output[0]]
        fresh.append(new)
    added = []
    for f in theirs[:-1]:
        v = nnabla_pb2.Variable()
        v.CopyFrom(shapes[f.output[0]])
        v.name = rename[f.output[0]]
        added.append(v)
    new_functions = [_copy(f) for f in rest[:at]] + fresh + [_copy(f) for f in rest[at:]]
    new_variables = [_copy(v) for v in kept] + added
    del network.function[:]
    network.function.extend(new_functions)
    del network.variable[:]
    network.variable.extend(new_variables)


def _copy(message):
    new = type(message)()
    new.CopyFrom(message)
    return new


def fit_to_csvs(proto: nnabla_pb2.NNablaProtoBuf, train_csv, val_csv) -> List[str]:
    """``deterministic_runtime`` and ``fit_image_inputs`` for a project pointed at these CSVs: the networks the
    optimizers train take the training CSV's first image size, the others the validation CSV's."""
    from ..formats.nnc_csv import first_image

    if not preprocessed_inputs(proto):
        return []
    said = [line for line in [deterministic_runtime(proto)] if line]
    train, val = first_image(train_csv), first_image(val_csv)
    if train is None:
        return said
    trained = {o.network_name for o in proto.optimizer}
    shapes = {n.name: (train if n.name in trained or val is None else val)[1] for n in proto.network}
    return said + fit_image_inputs(proto, shapes)


def fixed_training_crop(proto: nnabla_pb2.NNablaProtoBuf, crop_ratio: float = 0.875) -> List[str]:
    """The optimizers' networks see what the validation networks see, the same every epoch (no random scale, aspect,
    rotation or flip): a copy of the validation network's preprocessing where it takes images of the same size, else
    the centre ``crop_ratio`` of each image scaled to the network's size. A frozen backbone then gives the same
    features every epoch, and the frozen-prefix cache computes them once per image, for the monitors too."""
    said = []
    for network in [network_of(proto, o.network_name) for o in proto.optimizer]:
        mine = _first_chain(network)
        if not mine or not any(draws_random(f) for f in mine):
            continue
        other, theirs = _fixed_chain(proto)
        shape = {v.name: list(v.shape.dim) for v in network.variable}[mine[0].input[0]]
        if other is not None and {v.name: list(v.shape.dim) for v in other.variable}[theirs[0].input[0]] == shape:
            _replace_chain(network, mine, other, theirs)
            said.append(f"{network.name}: takes {other.name}'s centre crop instead of random crops and flips (--fixed-crop)")
            continue
        source = {v.name: v.shape.dim for v in network.variable}[mine[-1].input[0]]
        h, w = max(1, int(int(source[2]) * crop_ratio)), max(1, int(int(source[3]) * crop_ratio))
        p = mine[-1].image_augmentation_param
        crop_h, crop_w = int(p.shape.dim[-2]), int(p.shape.dim[-1])
        p.min_scale = p.max_scale = math.sqrt(crop_h * crop_w / (h * w))
        p.flip_lr = p.flip_ud = False
        p.angle = p.distortion = p.brightness = p.noise = 0
        p.aspect_ratio, p.contrast = 1.0, 1.0
        said.append(f"{network.name}: {mine[-1].name} fixed: the centre {h}x{w} scaled {p.min_scale:.3g}x to "
                    f"{crop_h}x{crop_w}, no random scale or flip (--fixed-crop)")
    return said




def set_input_size(proto: nnabla_pb2.NNablaProtoBuf, size: int, where) -> List[str]:
    """Run every network at ``size`` x ``size`` instead of its own crop: each augmentation that ends an input's
    preprocessing gives ``size`` (its scales moved with it, so it shows the image as before), an average pooling that
    covered its whole input still does, and every shape after them is what NNabla computes. A layer whose weights
    fix the map size (VGG's and AlexNet's first Affine) is one line. The cost per image scales with the pixels."""
    from ..errors import NncToolsError

    said = []
    for network in proto.network:
        variables = {v.name: v for v in network.variable}
        ends = [c[-1] for c in (_chain(network, n) for n in _image_inputs(network)) if c and c[-1].type == "ImageAugmentation"]
        for f in ends:
            p = f.image_augmentation_param
            old = int(p.shape.dim[-1])
            if old == size:
                continue
            p.shape.dim[-2:] = [size, size]
            p.min_scale, p.max_scale = p.min_scale * size / old, p.max_scale * size / old
            variables[f.output[0]].shape.dim[-2:] = [size, size]
            said.append(f"{network.name}: runs at {size}x{size} instead of {old}x{old} (--input-size; about "
                        f"{(size / old) ** 2:.2g}x the cost per image)")
        if ends:
            try:
                _recompute_shapes(proto, network)
            except Exception as e:  # NNabla's shape checks: a layer whose weights fix the size
                raise NncToolsError(where, f"--input-size {size}: {network.name} cannot run at that size "
                                    f"({str(e).strip().splitlines()[-1][:160]}); it runs at its own crop") from None
    return said


def _recompute_shapes(proto: nnabla_pb2.NNablaProtoBuf, network: nnabla_pb2.Network) -> None:
    """Every variable's shape as NNabla computes it from the inputs; an average pooling whose kernel covered its whole
    input (a global pooling) is first given its input's new size."""
    variables = {v.name: v for v in network.variable}
    for k, f in enumerate(network.function):
        if f.type == "AveragePooling":
            p = f.average_pooling_param
            source = list(variables[f.input[0]].shape.dim)
            if list(p.kernel.dim) == source[-2:] and not any(p.pad.dim):
                size = _shape_in(_built_shapes(proto, network, k), network, f.input[0])[-2:]
                p.kernel.dim[:] = size
                p.stride.dim[:] = size
    built = _built_shapes(proto, network, len(network.function))
    for f in network.function:
        for name in f.output:
            variables[name].shape.dim[1:] = _shape_in(built, network, name)[1:]


def _shape_in(built: Dict[str, List[int]], network: nnabla_pb2.Network, name: str) -> List[int]:
    """A variable's shape in the graph NNabla built: under its first repetition's name inside Repeat blocks; a
    RepeatStart's or RepeatEnd's output (gone from the built graph) has its input's shape."""
    variable = next(v for v in network.variable if v.name == name)
    if _first_repetition(variable) in built:
        return built[_first_repetition(variable)]
    maker = next((f for f in network.function if name in f.output), None)
    if maker is not None and maker.type in ("RepeatStart", "RepeatEnd"):
        return _shape_in(built, network, maker.input[0])
    return list(variable.shape.dim)


def _first_repetition(variable: nnabla_pb2.Variable) -> str:
    """The name NNabla's loader gives a variable's first repetition inside Repeat blocks (its own name outside)."""
    name = variable.name
    for r in variable.repeat_id:
        name = name.replace("{" + r + "}", "[0]") if "{" + r + "}" in name else name + f"_{r}[0]"
    return name


def _built_shapes(proto: nnabla_pb2.NNablaProtoBuf, network: nnabla_pb2.Network, upto: int) -> Dict[str, List[int]]:
    """The shapes NNabla gives the variables of ``network``'s first ``upto`` functions (batch 1; the project's parameters
    are not needed: NNabla draws stand-ins, then they are dropped)."""
    import logging
    import tempfile
    from pathlib import Path

    import nnabla as nn
    from google.protobuf import text_format
    from nnabla.utils.load import load

    single = nnabla_pb2.NNablaProtoBuf()
    single.global_config.CopyFrom(proto.global_config)
    part = single.network.add()
    part.CopyFrom(network)
    del part.function[upto:]
    used = {n for f in part.function for n in list(f.input) + list(f.output)}
    kept = [_copy(v) for v in part.variable if v.name in used]
    del part.variable[:]
    part.variable.extend(kept)
    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "shapes.nntxt"
        text.write_text(text_format.MessageToString(single), encoding="utf-8")
        nn.clear_parameters()
        logger = logging.getLogger("nnabla")
        level, logger.level = logger.level, 100  # NNabla's console lines, muted for the call
        try:
            info = load([str(text)], prepare_data_iterator=False, batch_size=1)
        finally:
            logger.setLevel(level)
        shapes = {name: list(v.variable_instance.shape) for name, v in info.networks[network.name].variables.items()}
    nn.clear_parameters()
    return shapes
