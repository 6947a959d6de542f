"""A corpus of hostile or merely unusual inputs for every command, through the real CLI (SPEC's contract): a mistake is one
line on stderr that names the file (or the flag) it is about, exit 2, no traceback, no file written or changed; an
unusual but legitimate input works. Each case builds only the files it names."""

from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from .conftest import nnabla_saved, single, tiny_project


def _zip(members):
    def make(path: Path):
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    return make


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _text(text: str):
    return lambda path: path.write_text(text, encoding="utf-8")


def _png(size, mode="L"):
    def make(path: Path):
        from PIL import Image
        Image.new(mode, size).save(path)
    return make


def _project_with(label: str = "0", image: bytes = None, size=(8, 8), mode="L", empty: bool = False):
    """tiny_project in a folder of its own (``<folder>/p.nnp``), its training CSV replaced by a hostile one."""
    def make(path: Path):
        path.parent.mkdir()
        tiny_project(path.parent)
        csv = path.parent / "training.csv"
        if empty:
            csv.write_text("")
        else:
            _labelled(csv, label, image, size, mode)
    return make


def _project_edited(edit):
    """tiny_project in a folder of its own (``<folder>/p.nnp``), its proto edited by ``edit(proto)``."""
    def make(path: Path):
        from nnc_tools.formats.nnp import load_project, save_project

        path.parent.mkdir()
        project = load_project(tiny_project(path.parent))
        edit(project.proto)
        save_project(project, path.with_name("edited.nnp"))
        path.with_name("edited.nnp").replace(path)
    return make


def _magic_solver(proto):
    proto.optimizer[0].solver.type = "Magic"


def _no_solver_parameters(proto):
    proto.optimizer[0].solver.ClearField(proto.optimizer[0].solver.WhichOneof("parameter"))


def _data_name(proto):
    proto.optimizer[0].data_variable[0].data_name = "pixels"


def _tiny_bytes(path: Path) -> bytes:
    full = nnabla_saved(path.with_name("full_for_truncation.nnp"))
    data = full.read_bytes()
    full.unlink()
    return data


def _labelled(path: Path, label: str, image: bytes = None, size=(8, 8), mode="L"):
    folder = path.parent / f"{path.stem}_img"
    folder.mkdir()
    if image is None:
        _png(size, mode)(folder / "0.png")
    else:
        (folder / "0.png").write_bytes(image)
    path.write_text(f"x:image,y:label;c0;c1;c2\n{folder.name}/0.png,{label}\n{folder.name}/0.png,{label}\n")  # tiny_project's


TINY_NNTXT = 'network {\n  name: "Main"\n  batch_size: 1\n}\n'
# every hostile file: placeholder -> (file name, how to make it)
FILES = {
    "empty_nnp": ("e.nnp", _bytes(b"")),
    "empty_nntxt": ("e.nntxt", _bytes(b"")),
    "empty_protobuf": ("e.protobuf", _bytes(b"")),
    "empty_sdcproj": ("e.sdcproj", _bytes(b"")),
    "garbage_nnp": ("g.nnp", _bytes(bytes(range(256)) * 4)),
    "garbage_nntxt": ("g.nntxt", _bytes(b"network { name: \x00\xff {{{")),
    "garbage_protobuf": ("g.protobuf", _bytes(b"\xff" * 64)),
    "garbage_sdcproj": ("g.sdcproj", _bytes(b"\x00\x01\x02[[[=\xff\xfe")),
    "truncated_nnp": ("t.nnp", lambda path: path.write_bytes(_tiny_bytes(path)[:300])),
    "zip_no_network": ("n.nnp", _zip({"parameter.h5": b"", "nnp_version.txt": "0.1"})),
    "zip_traversal": ("z.nnp", _zip({"../../evil.nntxt": TINY_NNTXT})),
    "zip_absolute": ("a.nnp", _zip({"/etc/evil.nntxt": TINY_NNTXT})),
    "nnp_is_text": ("x.nnp", _text(TINY_NNTXT)),
    "text_no_optimizer": ("noopt.nntxt", _text(TINY_NNTXT)),
    "unknown_ext": ("p.onnx2", _bytes(b"whatever")),
    "folder_nnp": ("folder.nnp", lambda path: path.mkdir()),
    "sdc_bad_count": ("bad.sdcproj", _text("[Global]\nNumNetwork=lots\n")),
    "sdc_no_sections": ("plain.sdcproj", _text("just some text\nwithout sections\n")),
    "sdc_huge_count": ("huge.sdcproj", _text("[Main_Network_Global]\nNumLayer=99999999999999999999\n[Main_Layer_0]\n"
                                             "NumProperty=99999999999999999999\n")),
    "sdc": ("p.sdcproj", _text(single())),
    "sdc_crlf": ("crlf.sdcproj", _text(single("\r\n"))),
    "ov_empty": ("empty.yaml", _text("")),
    "ov_list": ("list.yaml", _text("- freeze: [Affine]\n")),
    "ov_unknown_key": ("unk.yaml", _text("frieze: [Affine]\n")),
    "ov_string_mult": ("str.yaml", _text("lr_multiplier: {Affine: lots}\n")),
    "ov_negative": ("neg.yaml", _text("lr_multiplier: {Affine: -1}\n")),
    "ov_empty_match": ("em.yaml", _text("rules:\n  - match: ''\n    multiplier: 0\n")),
    "ov_params_number": ("pn.yaml", _text("rules:\n  - match: Affine\n    params: 3\n    multiplier: 0\n")),
    "ov_no_such_layer": ("nl.yaml", _text("freeze: [Affine_99]\n")),
    "ov_no_such_optimizer": ("no.yaml", _text("optimizers: [Adam]\nfreeze: [Affine]\n")),
    "ov_frozen_bn": ("fb.yaml", _text("frozen_bn: sometimes\nfreeze: [Affine]\n")),
    "ov_both": ("both.yaml", _text("rules:\n  - match: Affine\n    up_to: Affine\n    multiplier: 0\n")),
    "ov_tabs": ("tabs.yaml", _text("rules:\n\t- match: Affine\n")),
    "ov_binary": ("bin.yaml", _bytes(b"\xff\xfe\x00\x00garbage")),
    "ov_huge": ("huge.yaml", _text("# " + "x" * (2 << 20) + "\nfreeze: [Affine]\n")),
    "ov_inf": ("inf.yaml", _text("lr_multiplier: {Affine: .inf}\n")),
    "ov_decay_zero": ("d0.yaml", _text("rules:\n  - decay: 0\n    from: Affine\n")),
    "ov_unicode": ("ユニコード.yaml", _text("freeze: [Affine]\n")),
    "ov_glob_all": ("all.yaml", _text("freeze: ['*']\n")),
    "ov_bom": ("bom.yaml", _bytes("\ufefffreeze: [Affine]\n".encode("utf-8"))),
    "csv_empty": ("empty.csv", _bytes(b"")),
    "csv_header_only": ("header.csv", _text("x:image,y:label\n")),
    "csv_no_label": ("nolabel.csv", _text("x:image\nimg0.png\n")),
    "csv_text_label": ("textlabel.csv", lambda path: _labelled(path, "cat")),
    "csv_negative_label": ("neglabel.csv", lambda path: _labelled(path, "-1")),
    "csv_missing_image": ("missing.csv", _text("x:image,y:label\nnowhere/0.png,0\n")),
    "csv_corrupt_image": ("corrupt.csv", lambda path: _labelled(path, "0", image=b"not a png")),
    "csv_binary": ("binary.csv", _bytes(b"\x00\xff\xfe\x00" * 10)),
    "csv_big_image": ("big.csv", lambda path: _labelled(path, "0", size=(16, 16))),
    "csv_rgba": ("rgba.csv", lambda path: _labelled(path, "0", mode="RGBA")),
    "recipe_bad": ("bad_recipe.yaml", _text("name: x\nsource: cifar10\nclasses: [not_a_class]\n")),
    "recipe_unknown_key": ("unk_recipe.yaml", _text("name: x\nsource: cifar10\nclazzes: [cat]\n")),
    "recipe_traversal": ("trav_recipe.yaml", _text("name: ../../x\nsource: cifar10\nclasses: [cat]\n")),
    "archive_garbage": ("cifar-10-python.tar.gz", _bytes(b"\x1f\x8b garbage")),
    "archive_folder": ("not-cifar", lambda path: path.mkdir()),
    "train_big_images": ("big/p.nnp", _project_with(size=(16, 16))),
    "train_rgba_images": ("rgba/p.nnp", _project_with(mode="RGBA")),
    "train_corrupt_image": ("corrupt/p.nnp", _project_with(image=b"not a png")),
    "train_text_labels": ("textlabels/p.nnp", _project_with(label="cat")),
    "train_label_past_classes": ("past/p.nnp", _project_with(label="7")),
    "train_empty_csv": ("emptycsv/p.nnp", _project_with(empty=True)),
    "proj_magic_solver": ("magic/p.nnp", _project_edited(_magic_solver)),
    "proj_no_solver_params": ("nosolver/p.nnp", _project_edited(_no_solver_parameters)),
    "proj_unknown_data": ("nodata/p.nnp", _project_edited(_data_name)),
    "config_bad": ("c.yaml", _text("seeds: 0\n")),
    "config_list": ("cl.yaml", _text("- network: resnet20\n")),
    "config_unknown": ("cu.yaml", _text("netwrok: resnet20\n")),
    "weights_garbage": ("w.h5", _bytes(b"\x89HDF but not really")),
    "weights_missing": ("missing.h5", None),
    "missing_nnp": ("missing.nnp", None),
    "long_name": ("x" * 300 + ".nnp", None),
}


# (id, command line with {placeholders}, what must happen: "refused: <fragment>" naming {file}, or "works")
CASES = [
    # info
    ("info empty nnp", "info {empty_nnp}", "refused {empty_nnp}"),
    ("info empty nntxt", "info {empty_nntxt}", "works"),
    ("info empty protobuf", "info {empty_protobuf}", "works"),
    ("info empty sdcproj", "info {empty_sdcproj}", "refused {empty_sdcproj}"),
    ("info garbage nnp", "info {garbage_nnp}", "refused {garbage_nnp}"),
    ("info garbage nntxt", "info {garbage_nntxt}", "refused {garbage_nntxt}"),
    ("info garbage protobuf", "info {garbage_protobuf}", "refused {garbage_protobuf}"),
    ("info garbage sdcproj", "info {garbage_sdcproj}", "refused {garbage_sdcproj}"),
    ("info truncated nnp", "info {truncated_nnp}", "refused {truncated_nnp}"),
    ("info zip without network", "info {zip_no_network}", "refused {zip_no_network}"),
    ("info zip traversal", "info {zip_traversal}", "refused {zip_traversal}"),
    ("info zip absolute member", "info {zip_absolute}", "refused {zip_absolute}"),
    ("info nnp that is text", "info {nnp_is_text}", "refused {nnp_is_text}"),
    ("info unknown extension", "info {unknown_ext}", "refused {unknown_ext}"),
    ("info a folder", "info {folder_nnp}", "refused {folder_nnp}"),
    ("info missing file", "info {missing_nnp}", "refused {missing_nnp}"),
    ("info name over the limit", "info {long_name}", "refused"),
    ("info sdcproj bad count", "info {sdc_bad_count}", "refused {sdc_bad_count}"),
    ("info sdcproj no sections", "info {sdc_no_sections}", "refused {sdc_no_sections}"),
    ("info sdcproj huge counts", "info {sdc_huge_count}", "refused {sdc_huge_count}"),
    ("info sdcproj crlf", "info {sdc_crlf} --json", "works"),
    ("info project", "info {p} --json", "works"),
    # convert
    ("convert to unknown ext", "convert {p} {out}.xyz", "refused .xyz"),
    ("convert garbage", "convert {garbage_nnp} {out}.nntxt", "refused {garbage_nnp}"),
    ("convert onto itself", "convert {p} {p}", "refused {p}"),
    ("convert truncated", "convert {truncated_nnp} {out}.nnp", "refused {truncated_nnp}"),
    ("convert into a missing folder", "convert {p} {out}/deeper/x.nntxt", "works"),
    ("convert bad param format", "convert {p} {out}.nntxt --param-format .npy", "refused"),
    ("convert to protobuf", "convert {p} {out}.protobuf", "works"),
    ("convert text without optimizer", "convert {text_no_optimizer} {out}.nnp", "works"),
    ("convert over a folder", "convert {p} {folder_nnp}", "refused {folder_nnp}"),
    # apply-freeze
    ("freeze empty overlay", "apply-freeze {p} -c {ov_empty}", "refused {ov_empty}"),
    ("freeze overlay a list", "apply-freeze {p} -c {ov_list}", "refused {ov_list}"),
    ("freeze unknown key", "apply-freeze {p} -c {ov_unknown_key}", "refused {ov_unknown_key}"),
    ("freeze string multiplier", "apply-freeze {p} -c {ov_string_mult}", "refused {ov_string_mult}"),
    ("freeze negative multiplier", "apply-freeze {p} -c {ov_negative}", "refused {ov_negative}"),
    ("freeze empty match", "apply-freeze {p} -c {ov_empty_match}", "refused {ov_empty_match}"),
    ("freeze params a number", "apply-freeze {p} -c {ov_params_number}", "refused {ov_params_number}"),
    ("freeze no such layer", "apply-freeze {p} -c {ov_no_such_layer}", "refused {ov_no_such_layer}"),
    ("freeze no such optimizer", "apply-freeze {p} -c {ov_no_such_optimizer}", "refused {ov_no_such_optimizer}"),
    ("freeze bad frozen_bn", "apply-freeze {p} -c {ov_frozen_bn}", "refused {ov_frozen_bn}"),
    ("freeze match and up_to", "apply-freeze {p} -c {ov_both}", "refused {ov_both}"),
    ("freeze tabs in yaml", "apply-freeze {p} -c {ov_tabs}", "refused {ov_tabs}"),
    ("freeze binary overlay", "apply-freeze {p} -c {ov_binary}", "refused {ov_binary}"),
    ("freeze huge overlay", "apply-freeze {p} -c {ov_huge}", "refused {ov_huge}"),
    ("freeze infinite multiplier", "apply-freeze {p} -c {ov_inf}", "refused {ov_inf}"),
    ("freeze decay zero", "apply-freeze {p} -c {ov_decay_zero}", "refused {ov_decay_zero}"),
    ("freeze missing overlay", "apply-freeze {p} -c {missing_nnp}.yaml", "refused missing.nnp.yaml"),
    ("freeze garbage project", "apply-freeze {garbage_nnp} -c {ov_glob_all}", "refused {garbage_nnp}"),
    ("freeze output other ext", "apply-freeze {p} -c {ov_glob_all} -o {out}.nntxt", "refused .nntxt"),
    ("freeze sdcproj bad count", "apply-freeze {sdc_bad_count} -c {ov_glob_all}", "refused {sdc_bad_count}"),
    ("freeze unicode overlay name", "apply-freeze {p} -c {ov_unicode} -o {out}.nnp", "works"),
    ("freeze everything", "apply-freeze {p} -c {ov_glob_all} -o {out}.nnp", "works"),
    ("freeze bom overlay", "apply-freeze {p} -c {ov_bom} --dry-run", "works"),
    ("freeze sdcproj", "apply-freeze {sdc} -c {ov_glob_all} -o {out}.sdcproj", "works"),
    ("freeze sdcproj crlf", "apply-freeze {sdc_crlf} -c {ov_glob_all} --dry-run", "works"),
    ("freeze text project", "apply-freeze {ptxt} -c {ov_glob_all} -o {out}.nntxt", "works"),
    ("freeze without overlay", "apply-freeze {p}", "refused freeze.yaml"),
    # export
    ("export unknown network", "export resnet2000 -o {out}.nnp", "refused resnet2000"),
    ("export to txt", "export resnet20 -o {out}.txt", "refused .txt"),
    ("export classes one", "export resnet20 -o {out}.nnp --classes 1", "refused --classes"),
    ("export classes text", "export resnet20 -o {out}.nnp --classes ten", "refused --classes"),
    ("export input zero", "export resnet20 -o {out}.nnp --input 3,0,32", "refused --input"),
    ("export input two axes", "export resnet20 -o {out}.nnp --input 32,32", "refused --input"),
    ("export lr nan", "export resnet20 -o {out}.nnp --lr nan", "refused --lr"),
    ("export lr negative", "export resnet20 -o {out}.nnp --lr -0.1", "refused --lr"),
    ("export epochs zero", "export resnet20 -o {out}.nnp --epochs 0", "refused --epochs"),
    ("export batch huge", "export resnet20 -o {out}.nnp --batch-size 10000000", "refused --batch-size"),
    ("export unknown solver", "export resnet20 -o {out}.nnp --solver Magic", "refused Magic"),
    ("export weights garbage", "export resnet20 -o {out}.nnp --weights {garbage_nnp}", "refused {garbage_nnp}"),
    ("export weights missing", "export resnet20 -o {out}.nnp --weights {missing_nnp}", "refused {missing_nnp}"),
    ("export csv empty", "export resnet20 -o {out}.nnp --train-csv {csv_empty}", "refused {csv_empty}"),
    ("export csv text labels", "export resnet20 -o {out}.nnp --train-csv {csv_text_label}", "works"),  # the header counts
    ("export csv binary", "export resnet20 -o {out}.nnp --train-csv {csv_binary}", "refused {csv_binary}"),
    ("export csv no labels", "export resnet20 -o {out}.nnp --train-csv {csv_no_label}", "refused {csv_no_label}"),
    ("export nntxt", "export mini_vggnet -o {out}.nntxt --classes 3 --solver adam", "works"),
    # export-onnx
    ("onnx garbage", "export-onnx {garbage_nnp} -o {out}.onnx", "refused {garbage_nnp}"),
    ("onnx not onnx", "export-onnx {p} -o {out}.pb", "refused .pb"),
    ("onnx no executor", "export-onnx {text_no_optimizer} -o {out}.onnx", "refused {text_no_optimizer}"),
    ("onnx unknown executor", "export-onnx {p} -o {out}.onnx --executor Nope", "refused Nope"),
    ("onnx batch zero", "export-onnx {p} -o {out}.onnx --batch-size 0", "refused --batch-size"),
    # dataset
    ("dataset unknown recipe", "dataset cifar1000 -o {out}", "refused cifar1000"),
    ("dataset bad recipe class", "dataset {recipe_bad} -o {out} --synthetic", "refused {recipe_bad}"),
    ("dataset recipe unknown key", "dataset {recipe_unknown_key} -o {out} --synthetic", "refused {recipe_unknown_key}"),
    ("dataset recipe traversal name", "dataset {recipe_traversal} -o {out} --synthetic", "works"),  # a name is no path
    ("dataset garbage archive", "dataset cifar10 -o {out} --source {archive_garbage}", "refused {archive_garbage}"),
    ("dataset folder not cifar", "dataset cifar10 -o {out} --source {archive_folder}", "refused {archive_folder}"),
    ("dataset missing source", "dataset cifar10 -o {out} --source {missing_nnp}.tar.gz", "refused missing.nnp.tar.gz"),
    ("dataset per class zero", "dataset cifar10 -o {out} --synthetic --synthetic-per-class 0", "refused --synthetic-per-class"),
    ("dataset workers zero", "dataset cifar10 -o {out} --synthetic --workers 0", "refused --workers"),
    ("dataset seed negative", "dataset cifar10 -o {out} --synthetic --seed -3", "refused --seed"),
    ("dataset onto a file", "dataset cifar10 -o {p} --synthetic", "refused {p}"),
    ("dataset small synthetic", "dataset cifar100-aquatic -o {out} --synthetic --synthetic-per-class 5", "works"),
    # train
    ("train garbage project", "train {garbage_nnp} -o {out}", "refused {garbage_nnp}"),
    ("train no optimizer", "train {text_no_optimizer} -o {out}", "refused {text_no_optimizer}"),
    ("train epochs negative", "train {p} -o {out} --epochs -1", "refused --epochs"),
    ("train batch zero", "train {p} -o {out} --batch-size 0", "refused --batch-size"),
    ("train workers zero", "train {p} -o {out} --workers 0", "refused --workers"),
    ("train cache budget text", "train {p} -o {out} --cache-budget lots", "refused --cache-budget"),
    ("train weights garbage", "train {p} -o {out} --weights {weights_garbage}", "refused {weights_garbage}"),
    ("train weights missing", "train {p} -o {out} --weights {weights_missing}", "refused {weights_missing}"),
    ("train resume nothing", "train {p} -o {out} --resume --epochs 1", "works"),
    ("train device without cuda", "train {p} -o {out} --context cudnn", "refused"),
    ("train into a file", "train {p} -o {p}", "refused {p}"),
    ("train big images", "train {train_big_images} -o {out}", "refused training.csv"),
    ("train rgba images", "train {train_rgba_images} -o {out}", "refused training.csv"),
    ("train corrupt image", "train {train_corrupt_image} -o {out}", "refused training"),
    ("train text labels", "train {train_text_labels} -o {out}", "refused training.csv"),
    ("train label past the classes", "train {train_label_past_classes} -o {out}", "refused training.csv"),
    ("train empty csv", "train {train_empty_csv} -o {out}", "refused training.csv"),
    ("train unknown solver type", "train {proj_magic_solver} -o {out}", "refused {proj_magic_solver}"),
    ("train solver without parameters", "train {proj_no_solver_params} -o {out}", "refused {proj_no_solver_params}"),
    ("train data the CSV lacks", "train {proj_unknown_data} -o {out}", "refused {proj_unknown_data}"),
    ("train one epoch", "train {p} -o {out} --epochs 1 --workers 1", "works"),
    ("train two workers", "train {p} -o {out} --epochs 1 --workers 2 --batch-size 3", "works"),
    # evaluate
    ("evaluate missing csv", "evaluate {p} --dataset {missing_nnp}.csv", "refused missing.nnp.csv"),
    ("evaluate empty csv", "evaluate {p} --dataset {csv_empty}", "refused {csv_empty}"),
    ("evaluate header only", "evaluate {p} --dataset {csv_header_only}", "refused {csv_header_only}"),
    ("evaluate no labels", "evaluate {p} --dataset {csv_no_label}", "refused {csv_no_label}"),
    ("evaluate text labels", "evaluate {p} --dataset {csv_text_label}", "refused {csv_text_label}"),
    ("evaluate negative labels", "evaluate {p} --dataset {csv_negative_label}", "refused {csv_negative_label}"),
    ("evaluate missing image", "evaluate {p} --dataset {csv_missing_image}", "refused {csv_missing_image}"),
    ("evaluate corrupt image", "evaluate {p} --dataset {csv_corrupt_image}", "refused {csv_corrupt_image}"),
    ("evaluate binary csv", "evaluate {p} --dataset {csv_binary}", "refused {csv_binary}"),
    ("evaluate image too big", "evaluate {p} --dataset {csv_big_image}", "refused {csv_big_image}"),
    ("evaluate rgba image", "evaluate {p} --dataset {csv_rgba}", "refused {csv_rgba}"),
    ("evaluate batch zero", "evaluate {p} --dataset {val} --batch-size 0", "refused --batch-size"),
    ("evaluate garbage project", "evaluate {garbage_nnp} --dataset {val}", "refused {garbage_nnp}"),
    ("evaluate works", "evaluate {p} --dataset {val} -o {out}", "works"),
    # retarget
    ("retarget garbage", "retarget {garbage_nnp} -o {out}.nnp --train-csv {csv} --val-csv {val}", "refused {garbage_nnp}"),
    ("retarget missing csv", "retarget {p} -o {out}.nnp --train-csv {missing_nnp}.csv --val-csv {val}", "refused missing.nnp.csv"),
    ("retarget text labels", "retarget {p} -o {out}.nnp --train-csv {csv_text_label} --val-csv {val}", "works"),  # header
    ("retarget bad overlay", "retarget {p} -o {out}.nnp --train-csv {csv} --val-csv {val} -c {ov_no_such_layer}",
     "refused {ov_no_such_layer}"),
    ("retarget classes one", "retarget {p} -o {out}.nnp --train-csv {csv} --val-csv {val} --classes 1", "refused --classes"),
    ("retarget onto the source", "retarget {p} -o {p} --train-csv {csv} --val-csv {val}", "refused {p}"),
    ("retarget to 5 classes", "retarget {p} -o {out}.nnp --train-csv {csv} --val-csv {val} --classes 5", "refused {csv}"),
    # experiment
    ("experiment bad config", "experiment transfer -c {config_bad} -o {out} --synthetic", "refused {config_bad}"),
    ("experiment config a list", "experiment transfer -c {config_list} -o {out} --synthetic", "refused {config_list}"),
    ("experiment unknown key", "experiment transfer -c {config_unknown} -o {out} --synthetic", "refused {config_unknown}"),
    ("experiment missing config", "experiment transfer -c {missing_nnp}.yaml -o {out} --synthetic", "refused missing.nnp.yaml"),
    ("experiment seeds zero", "experiment transfer -o {out} --synthetic --seeds 0", "refused --seeds"),
    ("experiment both sources", "experiment transfer -o {out} --synthetic --source-weights {p} --source-project {p}",
     "refused --source-project"),
    ("experiment missing source project", "experiment transfer -o {out} --synthetic --source-project {missing_nnp}",
     "refused {missing_nnp}"),
    # models (the published ImageNet models; no network in tests: only what needs none)
    ("models list", "models", "works"),
    ("models unknown name", "models fetch ResNet-19", "refused ResNet-19"),
    ("models from garbage", "models fetch ResNet-18 --from {garbage_nnp}", "refused {garbage_nnp}"),
    ("models from missing file", "models fetch VGG-16 --from {missing_nnp}", "refused {missing_nnp}"),
    ("models from a 3-class project", "models fetch VGG-16 --from {p}", "refused {p}"),
    ("retarget unknown model", "retarget imagenet:NoNet -o {out}.nnp --train-csv {csv} --val-csv {val}", "refused NoNet"),
]


# Why each refusal is refused: a piece of its one line after the file name (the reason, not only the file).
REASONS = {
    'models unknown name': 'no ImageNet model called',
    'models from garbage': 'is not a whole .nnp archive',
    'models from missing file': 'no such file',
    'models from a 3-class project': 'is not an ImageNet project',
    'retarget unknown model': 'no ImageNet model called',
    'info empty nnp': 'not a readable .nnp',
    'info empty sdcproj': 'not an NNC project: no [Section] headers',
    'info garbage nnp': 'not a readable .nnp',
    'info garbage nntxt': 'network text is not UTF-8',
    'info garbage protobuf': 'malformed binary protobuf: Error parsing message with type',
    'info garbage sdcproj': 'not an NNC project: no [Section] headers',
    'info truncated nnp': 'not a readable .nnp',
    'info zip without network': 'no network member',
    'info zip traversal': "unsafe member name '../../evil.nntxt'",
    'info zip absolute member': "unsafe member name '/etc/evil.nntxt'",
    'info nnp that is text': 'not a readable .nnp',
    'info unknown extension': "unknown project file extension '.onnx2'",
    'info a folder': 'no such file',
    'info missing file': 'no such file',
    'info name over the limit': 'File name too long',
    'info sdcproj no sections': 'not an NNC project: no [Section] headers',
    'info sdcproj huge counts': 'not an NNC project: no [Engine], [Network_Global] or [Global] section',
    'convert to unknown ext': "unknown output extension '.xyz'",
    'convert garbage': 'not a readable .nnp',
    'convert onto itself': 'is an input of this command',
    'convert truncated': 'not a readable .nnp',
    'convert bad param format': "nnc-tl convert: error: argument --param-format: invalid choice: '.npy'",
    'convert over a folder': 'cannot write: is a folder, not a file',
    'freeze empty overlay': 'the overlay has no rules',
    'freeze overlay a list': "an overlay must be a mapping with 'rules', 'freeze' or 'lr_multiplier'",
    'freeze unknown key': "unknown key 'frieze'",
    'freeze string multiplier': "lr_multiplier[Affine]: expected a finite number >= 0, got 'lots'",
    'freeze negative multiplier': 'lr_multiplier[Affine]: expected a finite number >= 0, got -1',
    'freeze empty match': "rules[0]: expected a layer or parameter name, got ''",
    'freeze params a number': 'rules[0].params: expected a list of parameter names such as [W, b]',
    'freeze no such layer': "freeze[0]: match 'Affine_99' matches nothing in",
    'freeze no such optimizer': "optimizers: 'Adam' does not exist in",
    'freeze bad frozen_bn': "frozen_bn: expected inference or batch, got 'sometimes'",
    'freeze match and up_to': "rules[0]: give exactly one of 'match', 'up_to', 'decay'",
    'freeze tabs in yaml': 'not valid YAML for overlay file: while scanning for the next token',
    'freeze binary overlay': "cannot read overlay file: 'utf-8' codec can't decode byte 0xff in",
    'freeze huge overlay': 'is 2,097,172 bytes: too large for overlay file',
    'freeze infinite multiplier': 'lr_multiplier[Affine]: expected a finite number >= 0, got inf',
    'freeze decay zero': 'rules[0].decay: expected a finite number > 0, got 0',
    'freeze missing overlay': 'no such overlay file',
    'freeze garbage project': 'not a readable .nnp',
    'freeze output other ext': "output must have the input's extension '.nnp'",
    'freeze sdcproj bad count': "[Global] NumNetwork='lots' is not a count of networks",
    'info sdcproj bad count': "[Global] NumNetwork='lots' is not a count of networks",
    'freeze without overlay': 'no overlay given',
    'export unknown network': "unknown network 'resnet2000'",
    'export to txt': 'export writes .nnp or .nntxt',
    'export classes one': 'nnc-tl export: error: argument --classes: expected a class count from',
    'export classes text': 'nnc-tl export: error: argument --classes: expected a class count, got',
    'export input zero': '--input: expected C,H,W with positive sizes, got 3,0,32',
    'export input two axes': '--input: expected C,H,W with positive sizes, got 32,32',
    'export lr nan': 'nnc-tl export: error: argument --lr: expected a finite learning rate',
    'export lr negative': 'nnc-tl export: error: argument --lr: expected a finite learning rate',
    'export epochs zero': 'nnc-tl export: error: argument --epochs: expected a whole number from',
    'export batch huge': 'nnc-tl export: error: argument --batch-size: expected a batch size',
    'export unknown solver': "unknown solver 'Magic'",
    'export weights garbage': 'not a readable .nnp',
    'export weights missing': 'no such file',
    'export csv empty': 'empty dataset CSV',
    'export csv binary': "cannot read dataset CSV: 'utf-8' codec can't decode byte 0xff in",
    'export csv no labels': 'has no label column y',
    'onnx garbage': 'not a readable .nnp',
    'onnx not onnx': 'export-onnx writes an .onnx file',
    'onnx no executor': 'has no executor',
    'onnx unknown executor': "no executor 'Nope'",
    'onnx batch zero': 'nnc-tl export-onnx: error: argument --batch-size: expected a batch',
    'dataset unknown recipe': 'no such recipe file or built-in recipe',
    'dataset bad recipe class': "unknown class 'not_a_class' in cifar10",
    'dataset recipe unknown key': "unknown key 'clazzes'",
    'dataset garbage archive': 'md5 39aa27e413c621897c1da3c82021549c is not the official',
    'dataset folder not cifar': 'not a CIFAR-10/100 archive or folder',
    'dataset missing source': 'no such file or folder',
    'dataset per class zero': 'nnc-tl dataset: error: argument --synthetic-per-class: expected a',
    'dataset workers zero': 'nnc-tl dataset: error: argument --workers: expected a whole number',
    'dataset seed negative': 'nnc-tl dataset: error: argument --seed: expected a seed from 0 to',
    'dataset onto a file': 'File exists',
    'train garbage project': 'not a readable .nnp',
    'train no optimizer': 'has no optimizer to train',
    'train epochs negative': 'nnc-tl train: error: argument --epochs: expected a whole number from',
    'train batch zero': 'nnc-tl train: error: argument --batch-size: expected a batch size',
    'train workers zero': '--workers: expected a whole number from 1 to 1,048,576, got 0',
    'train cache budget text': 'nnc-tl train: error: argument --cache-budget: expected a size such as',
    'train weights garbage': "unknown project file extension '.h5'",
    'train weights missing': "unknown project file extension '.h5'",
    'train device without cuda': "--context cudnn needs NNabla's CUDA extension: pip install",
    'train into a file': 'File exists',
    'train big images': 'its x is 1x16x16 a row',
    'train rgba images': 'its x is 4x8x8 a row',
    'train corrupt image': 'cannot read dataset: cannot identify image file <_io.BufferedReader',
    'train text labels': 'cannot read dataset',
    'train label past the classes': "label 7 in row 1 is not one of the 3 classes of Main's",
    'train empty csv': 'empty dataset CSV',
    'train unknown solver type': 'solver Magic is not one NNabla provides',
    'train solver without parameters': 'optimizer Optimizer has no solver parameters',
    'train data the CSV lacks': "Main's x reads 'pixels', which",
    'evaluate missing csv': 'no such dataset CSV',
    'evaluate empty csv': 'empty dataset CSV',
    'evaluate header only': 'dataset CSV has no rows',
    'evaluate no labels': 'cannot read dataset',
    'evaluate text labels': 'cannot read dataset',
    'evaluate negative labels': 'label -1 in row 1 is not a class index',
    'evaluate missing image': 'cannot read dataset',
    'evaluate corrupt image': 'cannot read dataset: cannot identify image file <_io.BufferedReader',
    'evaluate binary csv': "cannot read dataset CSV: 'utf-8' codec can't decode byte 0xff in",
    'evaluate image too big': 'its x is 1x16x16 a row',
    'evaluate rgba image': 'its x is 4x8x8 a row',
    'evaluate batch zero': 'nnc-tl evaluate: error: argument --batch-size: expected a batch size',
    'evaluate garbage project': 'not a readable .nnp',
    'retarget garbage': 'not a readable .nnp',
    'retarget missing csv': 'no such dataset CSV',
    'retarget bad overlay': "freeze[0]: match 'Affine_99' matches nothing in",
    'retarget classes one': 'nnc-tl retarget: error: argument --classes: expected a class count',
    'retarget onto the source': 'is an input of this command',
    'retarget to 5 classes': 'its header names 3 classes, --classes says 5',
    'experiment bad config': 'seeds: expected a whole number from 1 to 1,048,576, got 0',
    'experiment config a list': 'an experiment config must be a mapping',
    'experiment unknown key': "unknown key 'netwrok'",
    'experiment missing config': 'no such experiment config',
    'experiment seeds zero': 'nnc-tl experiment: error: argument --seeds: expected a whole number',
    'experiment both sources': 'give the source as --source-weights or as --source-project, not both',
    'experiment missing source project': 'no such source file',
}


@pytest.fixture
def place(tmp_path):
    """Placeholder -> path, each file made on first use: the base project, CSVs and overlay, or a hostile file."""
    made = {}

    def path_of(name: str) -> Path:
        if name in made:
            return made[name]
        if name == "p":
            made[name] = tiny_project(tmp_path)
        elif name == "ptxt":
            source = tiny_project(tmp_path)
            made[name] = tmp_path / "p.nntxt"
            from nnc_tools.formats.nnp import load_project, save_project
            save_project(load_project(source), made[name])
        elif name in ("csv", "val"):
            path_of("p")
            made[name] = tmp_path / ("training.csv" if name == "csv" else "validation.csv")
        elif name == "out":
            made[name] = tmp_path / "out"
        else:
            filename, make = FILES[name]
            made[name] = tmp_path / filename
            if make is not None:
                make(made[name])
        return made[name]

    return path_of


def snapshot(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in folder.rglob("*")}


@pytest.mark.parametrize("case, line, expect", CASES, ids=[c[0] for c in CASES])
def test_corpus(cli, tmp_path, place, case, line, expect):
    import re

    names = re.findall(r"\{([^}]+)\}", line)
    paths = {name: place(name) for name in names}
    args = [part.format(**{k: str(v) for k, v in paths.items()}) for part in line.split()]
    before = snapshot(tmp_path)
    result = cli(*args)
    if expect == "works":
        assert result.code == 0, (case, result.err[-2000:])
        new = [p for p in snapshot(tmp_path) if p not in before]
        assert all(str(p).startswith(str(tmp_path / "out")) for p in new), (case, "written beside the outputs", new)
        return
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and "Traceback" not in result.err, (case, result)
    needle = expect.split(" ", 1)[1] if " " in expect else ""
    for name, path in paths.items():
        needle = needle.replace("{" + name + "}", path.name)
    assert needle in lines[0], (case, needle, lines[0])
    assert REASONS[case] in lines[0], (case, "another reason", lines[0])
    assert snapshot(tmp_path) == before, (case, "files written or changed")


def test_the_corpus_covers_every_command_and_is_large_enough():
    from nnc_tools.cli import build_parser

    commands = Counter(line.split()[0] for _, line, _ in CASES)
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(choices) - {"networks"} <= set(commands), set(choices) - set(commands)
    assert len(CASES) >= 120, len(CASES)
    refusals = {case for case, _, expect in CASES if expect != "works"}
    assert refusals == set(REASONS), refusals ^ set(REASONS)
