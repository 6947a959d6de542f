"""`models`: the ImageNet models NNC trained (``nnabla.models.imagenet``), listed and fetched."""

from __future__ import annotations

import argparse


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "models", parents=[common], help="the ImageNet models NNC trained: list them, fetch one (imagenet:NAME as a source)",
        description="Without an action: every published ImageNet model with its crop size, ImageNet error, and whether it "
        "is here. `models fetch NAME` downloads one into NNabla's model folder (~/nnabla_data/nnp_models/imagenet, or "
        "$NNC_TL_MODEL_HOME), where nnabla.models finds it too; a cut download resumes; the file is checked and its "
        "sha256 recorded beside it. Any command that takes a project takes imagenet:NAME and fetches on first use.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    f = actions.add_parser("fetch", parents=[common], help="download a model (or take one downloaded elsewhere)",
                           description="Download NAME from $NNABLA_MODELS_URL_BASE (NNabla's setting), --base-url, or "
                           "NNabla's own host, or take --from FILE; check it and record its sha256.")
    f.add_argument("name", metavar="NAME", help="a name `nnc-tl models` lists (ResNet-18, VGG-16, ...)")
    f.add_argument("--from", dest="from_file", metavar="FILE", help="a .nnp downloaded elsewhere (no network needed)")
    f.add_argument("--base-url", metavar="URL", help="a mirror of NNabla's model folder (…/nnp_models/)")
    f.add_argument("--force", action="store_true", help="download again even when the model is here")
    f.set_defaults(func=_cmd_fetch)
    p.set_defaults(func=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    from ..data.models import list_models, model_home

    print(f"{'name':<16} {'crop':>8} {'top-1 error':>11} {'top-5 error':>11}  here")
    for model, path, sha256 in list_models():
        errors = (f"{model.top1:.2f} %", f"{model.top5:.2f} %") if model.top1 is not None else ("-", "-")
        here = f"yes (sha256 {sha256[:12]}…)" if sha256 else ("yes (not yet checked)" if path.is_file() else "no")
        print(f"{model.name:<16} {model.crop:>4}x{model.crop:<3} {errors[0]:>11} {errors[1]:>11}  {here}")
    print(f"folder: {model_home()}; errors: ImageNet validation, single center crop, as NNabla's documentation gives them")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ..data.models import fetch_model

    got = fetch_model(args.name, from_file=args.from_file, base=args.base_url, force=args.force)
    verb = "fetched" if got.fetched else "already here, unchanged"
    print(f"{got.model.name}: {verb}: {got.path}")
    print(f"sha256 {got.sha256} (recorded in {got.path.name}.sha256; from {got.origin})")
    print(f"use it as imagenet:{got.model.name}, e.g. nnc-tl retarget imagenet:{got.model.name} -o mine.nnp "
          "--train-csv training.csv --val-csv validation.csv")
    return 0
