"""`retarget`: a trained project pointed at a new dataset, as an NNabla project or NNC's `.sdcproj`."""

from __future__ import annotations

import argparse
import sys

from . import arguments
from .printing import print_property_edits, print_weights


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    _add_retarget(sub, common)


def _cmd_retarget(args: argparse.Namespace) -> int:
    from ..project.retarget import RetargetOptions, retarget

    options = RetargetOptions(args.train_csv, args.val_csv, classes=args.classes, head=args.head, overlay=args.config,
                              reset_head=args.reset_head, epochs=args.epochs, batch_size=args.batch_size, solver=args.solver,
                              lr=args.lr, seed=args.seed, weights=args.weights,
                              allow_frozen_initial=args.allow_frozen_initial, fixed_crop=args.fixed_crop,
                              input_size=args.input_size)
    result = retarget(args.source, args.output, options)
    head = result.head
    print(f"head {head.layer} ({head.type}): {head.why}")
    if result.renamed:
        old, new = (", ".join(names[:4]) + (", ..." if len(names) > 4 else "") for names in result.renamed)
        print(f"{result.classes} classes as before, but other ones: the source was trained on {old}; {args.train_csv} "
              f"names {new}. The head scored the old classes, so it is drawn anew")
    if result.is_sdcproj:  # its lines that changed
        return _print_sdcproj_retarget(args, result)
    if result.networks or result.reinitialised:
        drawn = f"re-initialised {', '.join(result.reinitialised)}" if result.reinitialised else \
            "the head starts from its initializer"
        where = f" in {', '.join(result.networks)}" if result.networks else ""
        print(f"{head.classes} -> {result.classes} classes ({result.classes_from}){where}; {drawn}")
    else:
        print(f"{result.classes} classes ({result.classes_from}): the head is kept (--reset-head draws it anew)")
    print(f"copied {result.copied} parameters bit for bit")
    for line in result.fitted:
        print(f"fitted to your images: {line}")
    if result.left:
        print(f"{len(result.left)} parameters have no values and start from their initializer: "
              f"{', '.join(result.left[:8])}{', ...' if len(result.left) > 8 else ''}")
    for name in result.dropped:
        print(f"left out {name} (solver states; they do not fit the new head)")
    for warning in result.warnings:
        print(f"nnc-tl: warning: {warning}", file=sys.stderr)
    return _print_retargeted(args, result)


def _print_sdcproj_retarget(args: argparse.Namespace, result) -> int:
    print(f"{result.head.classes} -> {result.classes} classes ({result.classes_from})"
          + (f" in {', '.join(result.networks)}" if result.networks else ": the head is kept"))
    print_property_edits(result.edits)
    if result.weights is not None:
        print_weights(result.weights)
    return _print_retargeted(args, result)


def _print_retargeted(args: argparse.Namespace, result) -> int:
    """What both kinds of target print last: the datasets, the overlay's table, the files written."""
    from ..project.matching import format_changes

    for name, uri in result.datasets.items():
        print(f"dataset {name}: {uri}")
    if args.config:
        print(format_changes(result.changes))
    for path in result.written:
        print(f"wrote {path}")
    return 0


def _add_retarget(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "retarget", parents=[common],
        help="point a trained classifier project at a new dataset: head resized, datasets swapped, optionally frozen",
        description="Make TARGET from the trained project SOURCE (.nnp, .nntxt/.prototxt with its .h5/.protobuf, .protobuf; "
        "NNC's or nnabla_cli's results.nnp): the head (the last parameterised layer reaching the loss, in every network) "
        "resized to the new class count and re-initialised (also at the same count when the source's training CSV "
        "names other classes than --train-csv), every other parameter copied bit for bit, the datasets pointed at the "
        "new CSVs, an overlay applied as apply-freeze does; a parameter the overlay freezes must have values. From an "
        ".sdcproj (NNC's own project) the result is an .sdcproj with only the lines that must change.",
    )
    p.add_argument("source")
    p.add_argument("-o", "--output", required=True, metavar="TARGET.{nnp,nntxt,protobuf}")
    p.add_argument("--train-csv", required=True, metavar="CSV")
    p.add_argument("--val-csv", required=True, metavar="CSV")
    p.add_argument("--classes", type=arguments.classes, help="default: from --train-csv's header, else its largest label + 1")
    p.add_argument("--head", metavar="LAYER", help="the layer to resize (default: the one the loss reaches)")
    p.add_argument("-c", "--config", metavar="OVERLAY.yaml", help="a freeze overlay, applied as apply-freeze applies it, or a shipped one: "
                   "last-fc-only (only the head trains: NNC's plugin's last_fc_only), all (everything trains)")
    p.add_argument("--reset-head", action="store_true", help="draw the head anew even when the class count is the same")
    p.add_argument("--weights", metavar="PARAMS", help="parameters (.h5/.protobuf/.nnp) for a project that holds none")
    p.add_argument("--epochs", type=arguments.count)
    p.add_argument("--batch-size", type=arguments.batch)
    p.add_argument("--solver", help="replace the solver (multipliers kept): Sgd, Momentum, Adam, ...")
    p.add_argument("--lr", type=arguments.learning_rate)
    p.add_argument("--seed", type=arguments.seed, default=0, help="the new head's initial values")
    p.add_argument("--allow-frozen-initial", action="store_true", help="write TARGET even when a parameter it freezes "
                   "has no values (it then trains frozen at its random initial value)")
    p.add_argument("--fixed-crop", action="store_true", help="training sees what validation sees (the centre crop, "
                   "scaled; no random scale or flip), so a frozen backbone is computed once per image, not every epoch")
    p.add_argument("--input-size", type=arguments.count, metavar="N", help="run an image network (NNC's ImageNet "
                   "models) at NxN instead of its own crop, e.g. 112: about (N/224)^2 of the cost per image, on features "
                   "the model learnt at another scale")
    p.set_defaults(func=_cmd_retarget)
