"""`networks`, `export` and `export-onnx`: the network zoo and what is exported from a project."""

from __future__ import annotations

import argparse

from . import arguments


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    _add_networks(sub, common)
    _add_export(sub, common)
    _add_export_onnx(sub, common)


def _cmd_networks(args: argparse.Namespace) -> int:
    from ..project.networks import get_network, list_networks

    for name in list_networks():
        print(f"{name:<22} {get_network(name).description}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ..project.export import export_network

    result = export_network(
        args.network, args.output, weights=args.weights, train_csv=args.train_csv, val_csv=args.val_csv,
        classes=args.classes, input_shape=args.input, epochs=args.epochs, batch_size=args.batch_size,
        solver=args.solver, lr=args.lr,
    )
    print(f"{result.network}: {result.parameters:,} parameters, {result.classes} classes ({result.classes_from})")
    if args.weights:
        print(f"copied {len(result.copied)} parameters from {args.weights}")
        for name, why in result.reinitialised:
            print(f"  re-initialised {name}: {why}")
    for path in result.written:
        print(f"wrote {path}")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..formats.nnp import load_project
    from ..project.onnx_export import export_onnx
    from ..training.evaluate import trained_class_names

    names = trained_class_names(load_project(args.project).proto, Path(args.project))
    result = export_onnx(args.project, args.output, batch_size=args.batch_size, executor=args.executor, class_names=names)
    print(result.describe())
    print(f"classes: {', '.join(result.class_names)}" if result.class_names else "classes: not named by the project's data")
    print(f"wrote {result.path} (the same in its metadata_props)")
    return 0


def _add_networks(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("networks", parents=[common], help="list the registered networks")
    p.set_defaults(func=_cmd_networks)


def _add_export(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export", parents=[common],
        help="write a registered network as a complete NNC-style project (.nnp or .nntxt)",
        description="Write NETWORK as a project with networks Main, MainValidation and MainRuntime, an optimizer, "
        "monitors, an executor and datasets Training/Validation. Images are divided by 255 by the data loader, as in NNC.",
    )
    p.add_argument("network")
    p.add_argument("-o", "--output", required=True, metavar="OUT.{nnp,nntxt}")
    p.add_argument("--classes", type=arguments.classes,
                   help="output classes (default: from --train-csv's header or labels, else 10)")
    p.add_argument("--input", type=arguments.shape, default=(3, 32, 32), metavar="C,H,W",
                   help="the images' channels, height and width (default 3,32,32: CIFAR)")
    p.add_argument("--train-csv", metavar="CSV", help="training dataset CSV (default training.csv beside the project)")
    p.add_argument("--val-csv", metavar="CSV", help="validation dataset CSV (default validation.csv beside the project)")
    p.add_argument("--epochs", type=arguments.count, default=50, help="max_epoch of the training config (default 50)")
    p.add_argument("--batch-size", type=arguments.batch, default=64)
    p.add_argument("--solver", default="Momentum", help="any NNabla solver: Sgd, Momentum, Nesterov, Adam, AdamW, ...")
    p.add_argument("--lr", type=arguments.learning_rate, default=0.01, help="the solver's learning rate (default 0.01)")
    p.add_argument("--weights", metavar="FROM.nnp", help="start from these parameters where name and shape match")
    p.set_defaults(func=_cmd_export)


def _add_export_onnx(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export-onnx", parents=[common], help="write a trained project's executor network as ONNX",
                       description="NNabla's own ONNX exporter on the executor's network (NNC's MainRuntime) with its "
                       "parameters. Needs: pip install '.[onnx]' && pip install --no-deps nnabla-converter==1.39.0")
    p.add_argument("project")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx")
    p.add_argument("--batch-size", type=arguments.batch, help="fix the model's batch size (default: any batch, one image too)")
    p.add_argument("--executor", metavar="NAME", help="default: the project's first executor")
    p.set_defaults(func=_cmd_export_onnx)
