"""Stand-ins for the published ImageNet models, for tests and benchmarks that cannot download them: built from the NNC
sample projects in ``../shared/nnc-samples`` (the projects NNC trained the published models from)."""

from __future__ import annotations

from pathlib import Path

import nnabla as nn

NNC_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "nnc-samples"


def imagenet_standin(sample: str, target: Path, samples: Path = NNC_SAMPLES) -> Path:
    """A stand-in for a published ImageNet model: the NNC sample project it was trained from (the converter's prototxt,
    the same networks, names and preprocessing), its parameters from NNabla's initializers under the names NNabla's
    loader gives them (Repeat blocks as ``[i]``, as every results.nnp holds them), and the Training/Validation datasets
    NNC's results carry (the samples' prototxts were converted without a dataset)."""
    import zipfile

    from google.protobuf import text_format
    from nnabla.utils import nnabla_pb2
    from nnabla.utils.load import load as nnabla_load

    prototxt = Path(samples) / f"{sample}.prototxt"
    nn.clear_parameters()
    nnabla_load([str(prototxt)], prepare_data_iterator=False)
    params = target.with_name(target.name + ".protobuf")
    nn.save_parameters(str(params))
    nn.clear_parameters()
    proto = nnabla_pb2.NNablaProtoBuf()
    text_format.Merge(prototxt.read_text(), proto)
    for name, uri in (("Training", "ILSVRC2012/train.csv"), ("Validation", "ILSVRC2012/val.csv")):
        d = proto.dataset.add()
        d.name, d.uri, d.batch_size, d.shuffle, d.no_image_normalization = name, uri, 64, name == "Training", True
        d.variable.extend(["x", "y"])
    proto.optimizer[0].dataset_name[:] = ["Training"]
    for m in proto.monitor:
        m.dataset_name[:] = ["Training" if m.name == "train_error" else "Validation"]
    with zipfile.ZipFile(target, "w") as z:
        z.writestr("nnp_version.txt", "0.1\n")
        z.writestr("network.nntxt", text_format.MessageToString(proto))
        z.write(params, "parameter.protobuf")
    params.unlink()
    return target
