"""The `nnc-tl` command: argument parsing and printing only; each subcommand calls one library function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional

# NNabla logs INFO lines ("Initializing CPU extension...") on import; keep the console for our output.
logging.getLogger("nnabla").setLevel(os.environ.get("NNC_TL_NNABLA_LOG", "WARNING"))

from . import __version__, arguments  # noqa: E402
from .cli_training import add_training_commands, print_property_edits  # noqa: E402
from .errors import NncToolsError, SettingError  # noqa: E402


def _cmd_info(args: argparse.Namespace) -> int:
    from .project.info import describe, format_description

    info = describe(args.project, args.params)
    print(json.dumps(_printable(info), indent=2, default=str) if args.json else format_description(info))
    return 0


def _printable(value):
    """Strings with bytes in no encoding (kept as lone surrogates so that files round-trip) as ``\\xff`` text: JSON
    readers refuse lone surrogates."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


def _cmd_convert(args: argparse.Namespace) -> int:
    from .formats.nnp import load_project, save_project

    project = load_project(args.src, args.params)
    written = save_project(project, args.dst, parameter_format=args.param_format, inputs=[args.src, *args.params])
    for path in written:
        print(f"wrote {path}")
    return 0


def _cmd_apply_freeze(args: argparse.Namespace) -> int:
    from .project.freeze import apply_freeze
    from .project.matching import format_changes

    result = apply_freeze(args.project, args.config, args.output, dry_run=args.dry_run, weights=args.weights,
                          job_dir=args.job_dir)
    print(f"overlay {result.overlay} on {result.project}")
    print(format_changes(result.changes))
    if result.weights is not None:
        _print_weights(result)
    for warning in result.warnings:
        print(f"nnc-tl: warning: {warning}", file=sys.stderr)
    if args.dry_run:
        print("dry run: nothing written")
    elif result.output is not None:
        print(f"wrote {result.output}")
    return 0


def _print_weights(result) -> None:
    w = result.weights
    print_property_edits(result.references)
    print(f"{len(w.assigned)} parameters take their weights from job {w.job_id}; {len(w.left)} left to their initializer"
          + (f" ({', '.join(w.left[:5])}{', ...' if len(w.left) > 5 else ''})" if w.left else ""))
    where = f"{w.results} (copied)" if w.copy_from is not None else f"{w.results}, where it is"
    print(f"NNC loads them from its project's results/{w.job_id}/results.nnp: {where}")


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from .project.onnx_export import export_onnx

    print(f"wrote {export_onnx(args.project, args.output, batch_size=args.batch_size, executor=args.executor)}")
    return 0


def _cmd_networks(args: argparse.Namespace) -> int:
    from .project.networks import get_network, list_networks

    for name in list_networks():
        print(f"{name:<22} {get_network(name).description}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .project.export import export_network

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


def _cmd_dataset(args: argparse.Namespace) -> int:
    from .data.recipes import make_dataset

    result = make_dataset(
        args.recipe, args.output, source=args.source, synthetic=args.synthetic, seed=args.seed, workers=args.workers,
        verify=not args.no_verify, force=args.force, synthetic_per_class=args.synthetic_per_class,
    )
    if result.up_to_date:
        print(f"{result.outdir}: already up to date (same recipe, source and seed); nothing to do")
    else:
        print(f"{result.outdir}: wrote {result.written} images")
    print(f"classes ({len(result.classes)}): {', '.join(result.classes[:12])}{' ...' if len(result.classes) > 12 else ''}")
    for csv, (split, count) in zip(result.csvs, result.counts.items()):
        per = sorted(set(result.per_class[split].values()))
        print(f"  {csv}: {count} rows ({'/'.join(map(str, per))} per class)")
    return 0


def _add_info(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("info", parents=[common], help="show networks, parameters, datasets and learning-rate multipliers of a project")
    p.add_argument("project", help="a .nnp, .nntxt, .prototxt, .protobuf or .sdcproj project")
    p.add_argument("--params", action="append", default=[], metavar="FILE", help="extra parameter file (.h5/.protobuf)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)


def _add_convert(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "convert", parents=[common],
        help="convert between .nnp, .nntxt/.prototxt (+ .h5/.protobuf parameters beside it) and .protobuf",
        description="Convert a project. A text output gets its parameters in <stem>.h5 (or --param-format) beside it.",
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--params", action="append", default=[], metavar="FILE", help="extra parameter file (.h5/.protobuf)")
    p.add_argument(
        "--param-format",
        choices=[".h5", ".protobuf", "inline"],
        default=None,
        help="parameter format: .h5 (default) or .protobuf beside a text output / inside an .nnp, or inline in the text",
    )
    p.set_defaults(func=_cmd_convert)


def _add_apply_freeze(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "apply-freeze", parents=[common],
        help="set learning-rate multipliers (freeze layers) from a YAML overlay",
        description="Set learning-rate multipliers from a YAML overlay in a .nnp/.nntxt/.prototxt/.protobuf project or an "
        "NNC .sdcproj. Without -c: <stem>.freeze.yaml beside PROJECT, else ./freeze.yaml. Without -o: PROJECT in place.",
    )
    p.add_argument("project")
    p.add_argument("-c", "--config", metavar="OVERLAY.yaml", help="the freeze overlay")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of rewriting PROJECT (same extension)")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--weights", metavar="FROM.nnp", help=".sdcproj: NNC's 'Open in EDIT Tab with Weight': every layer "
                   "parameter FROM.nnp has gets a W.File/b.File/... reference NNC's runner loads")
    p.add_argument("--job-dir", metavar="DIR", help="with --weights: copy FROM.nnp to DIR/results.nnp (DIR's name is the "
                   "job id; default <output stem>.weights/nnctl_<hash>, unless FROM.nnp is in NNC's results already)")
    p.set_defaults(func=_cmd_apply_freeze)


def _add_export_onnx(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export-onnx", parents=[common], help="write a trained project's executor network as ONNX",
                       description="NNabla's own ONNX exporter on the executor's network (NNC's MainRuntime) with its "
                       "parameters. Needs: pip install '.[onnx]' && pip install --no-deps nnabla-converter==1.39.0")
    p.add_argument("project")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx")
    p.add_argument("--batch-size", type=arguments.batch, help="the model's batch size (default: the network's)")
    p.add_argument("--executor", metavar="NAME", help="default: the project's first executor")
    p.set_defaults(func=_cmd_export_onnx)


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
    p.add_argument("--input", type=arguments.shape, default=(3, 32, 32), metavar="C,H,W")
    p.add_argument("--train-csv", metavar="CSV", help="training dataset CSV (default training.csv beside the project)")
    p.add_argument("--val-csv", metavar="CSV", help="validation dataset CSV (default validation.csv beside the project)")
    p.add_argument("--epochs", type=arguments.count, default=50)
    p.add_argument("--batch-size", type=arguments.batch, default=64)
    p.add_argument("--solver", default="Momentum", help="any NNabla solver: Sgd, Momentum, Nesterov, Adam, AdamW, ...")
    p.add_argument("--lr", type=arguments.learning_rate, default=0.01)
    p.add_argument("--weights", metavar="FROM.nnp", help="start from these parameters where name and shape match")
    p.set_defaults(func=_cmd_export)


def _add_dataset(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dataset", parents=[common],
        help="build an NNC-format dataset (PNGs + CSVs) from a CIFAR archive",
        description="RECIPE is cifar10, cifar100, cifar100-aquatic or a YAML recipe file. Writes OUTDIR/{training,validation,"
        "test}/<class>/<i>.png and training.csv, validation.csv, test.csv. A re-run with the same inputs does nothing; an "
        "interrupted run resumes.",
    )
    p.add_argument("recipe")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("--source", metavar="PATH|URL", help="official archive (.tar.gz, python or binary) or its extracted folder, or a URL")
    p.add_argument("--synthetic", action="store_true", help="generate a small deterministic CIFAR-format archive and build from it")
    p.add_argument("--synthetic-per-class", type=arguments.count, metavar="N",
                   help="synthetic training images per class (default 500 for CIFAR-10, 50 for CIFAR-100; test = N/5)")
    p.add_argument("--seed", type=arguments.seed, default=0, help="seed of the training/validation split")
    p.add_argument("--workers", type=arguments.count, default=None, help="PNG encoding processes (default: all cores)")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check of official archive names")
    p.add_argument("--force", action="store_true", help="replace a different dataset already in OUTDIR")
    p.set_defaults(func=_cmd_dataset)


def build_parser() -> argparse.ArgumentParser:
    parser = arguments.Parser(
        prog="nnc-tl",
        description="Transfer learning for NNabla and Neural Network Console projects.",
    )
    parser.add_argument("--version", action="version", version=f"nnc-tl {__version__}")
    common = arguments.Parser(add_help=False)
    verbosity = common.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0,
                           help="only warnings and errors on stderr (no progress lines)")
    verbosity.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                           help="also debugging lines on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    _add_info(sub, common)
    _add_convert(sub, common)
    _add_apply_freeze(sub, common)
    _add_networks(sub, common)
    _add_export(sub, common)
    _add_export_onnx(sub, common)
    _add_dataset(sub, common)
    add_training_commands(sub, common)
    return parser


def _as_the_user_said_it(error: NncToolsError, args: argparse.Namespace) -> str:
    """The error's line; a setting the command took as a flag is named as that flag (``frozen_bn`` -> ``--frozen-bn``)."""
    if isinstance(error, SettingError) and error.path is None and hasattr(args, error.setting):
        return "--" + error.setting.replace("_", "-") + str(error)[len(error.setting):]
    return str(error)


def _report_on_stderr(verbosity: int) -> logging.Handler:
    """The library's progress lines (``logging`` under ``nnc_tools``) on stderr: INFO, or WARNING with -q, DEBUG with -v;
    only there (NNabla gives the root logger a handler of its own, which would print each line again)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("nnc_tools")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity])
    return handler


def main(argv: Optional[List[str]] = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a name the terminal's encoding lacks is printed escaped, not a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _report_on_stderr(args.verbosity)
    try:
        return args.func(args)
    except NncToolsError as e:
        print("nnc-tl: error: " + " ".join(_as_the_user_said_it(e, args).split()), file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:
            raise
        # a path the user gave that the system refuses outright (a name over its length limit, a folder without access)
        print(f"nnc-tl: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnc-tl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        logger = logging.getLogger("nnc_tools")
        logger.removeHandler(handler)
        logger.propagate = True


if __name__ == "__main__":
    sys.exit(main())
