"""The commands that train or use training: `retarget`, `train`, `evaluate`, `experiment`; each a small ``_add_*`` (its
arguments) and ``_cmd_*`` (one library call, then printing) pair, as in ``cli``."""

from __future__ import annotations

import argparse
import sys

from . import arguments


def add_training_commands(sub, common: argparse.ArgumentParser) -> None:
    _add_retarget(sub, common)
    _add_train(sub, common)
    _add_evaluate(sub, common)
    _add_experiment(sub, common)


def _cmd_retarget(args: argparse.Namespace) -> int:
    from .project.retarget import RetargetOptions, retarget

    options = RetargetOptions(args.train_csv, args.val_csv, classes=args.classes, head=args.head, overlay=args.config,
                              reset_head=args.reset_head, epochs=args.epochs, batch_size=args.batch_size, solver=args.solver,
                              lr=args.lr, seed=args.seed, weights=args.weights)
    result = retarget(args.source, args.output, options)
    head = result.head
    print(f"head {head.layer} ({head.type}): {head.why}")
    if result.is_sdcproj:  # its lines that changed
        return _print_sdcproj_retarget(args, result)
    if result.reinitialised:
        print(f"{head.classes} -> {result.classes} classes ({result.classes_from}) in {', '.join(result.networks)}; "
              f"re-initialised {', '.join(result.reinitialised)}")
    else:
        print(f"{result.classes} classes ({result.classes_from}): the head is kept (--reset-head draws it anew)")
    print(f"copied {result.copied} parameters bit for bit")
    for name in result.dropped:
        print(f"left out {name} (solver states; they do not fit the new head)")
    for warning in result.warnings:
        print(f"nnc-tl: warning: {warning}", file=sys.stderr)
    return _print_retargeted(args, result)


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.train import TrainOptions, train

    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, context=args.context, device_id=args.device_id,
                           weights=args.weights, resume=args.resume, seed=args.seed, frozen_bn=args.frozen_bn,
                           cache_frozen=args.cache_frozen, cache_budget=args.cache_budget, workers=args.workers,
                           phases=args.phases)
    result = train(args.project, args.output, options)
    s = result.summary
    for name, why in result.reinitialised:
        print(f"re-initialised {name}: {why}")
    accuracy = "n/a" if s.accuracy is None else f"{s.accuracy:.4f}"
    print(f"best epoch {s.best_epoch} of {s.epochs}: validation accuracy {accuracy}, "
          f"{s.images_per_second:.1f} img/s, {s.wall_seconds:.1f} s; {len(s.frozen_parameters)} parameters frozen")
    print(f"wrote {result.result_dir}/results.nnp, results_current.nnp, monitoring_report.yml, training_log.csv, "
          "learning_curve.png, confusion_matrix.csv/.png, summary.json")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.evaluate import evaluate, format_evaluation

    result = evaluate(args.project, args.dataset, args.output, batch_size=args.batch_size)
    print(format_evaluation(result))
    if args.output:
        print(f"wrote {args.output}/confusion_matrix.csv, confusion_matrix.png, evaluation.json")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from .experiment.config import load_config
    from .experiment.report import headline
    from .experiment.transfer import run_transfer

    config = load_config(args.config, seeds=args.seeds, source_epochs=args.source_epochs, target_epochs=args.target_epochs,
                         batch_size=args.batch_size, network=args.network)
    report = run_transfer(args.output, config, synthetic=args.synthetic, cifar10=args.cifar10, cifar100=args.cifar100,
                          source_weights=args.source_weights, source_project=args.source_project, verify=not args.no_verify)
    print(headline(args.output))
    print(f"report: {report} (and {report.with_suffix('.md')})")
    return 0


def print_property_edits(rows) -> None:
    """(what, old, new) rows as a table: the project lines that changed."""
    width = max([len(what) for what, _, _ in rows] or [0])
    for what, old, new in rows:
        print(f"  {what:<{width}}  {old or '(empty)'} -> {new or '(empty)'}")


def _print_sdcproj_retarget(args: argparse.Namespace, result) -> int:
    print(f"{result.head.classes} -> {result.classes} classes ({result.classes_from})"
          + (f" in {', '.join(result.networks)}" if result.networks else ": the head is kept"))
    print_property_edits(result.edits)
    w = result.weights
    if w is not None:
        print(f"{len(w.assigned)} parameters take their weights from job {w.job_id} ({w.results}); "
              f"{len(w.left)} start from their initializer")
    return _print_retargeted(args, result)


def _print_retargeted(args: argparse.Namespace, result) -> int:
    """What both kinds of target print last: the datasets, the overlay's table, the files written."""
    from .project.matching import format_changes

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
        "resized to the new class count and re-initialised, every other parameter copied bit for bit, the datasets "
        "pointed at the new CSVs, an overlay applied as apply-freeze does.",
    )
    p.add_argument("source")
    p.add_argument("-o", "--output", required=True, metavar="TARGET.{nnp,nntxt,protobuf}")
    p.add_argument("--train-csv", required=True, metavar="CSV")
    p.add_argument("--val-csv", required=True, metavar="CSV")
    p.add_argument("--classes", type=arguments.classes, help="default: from --train-csv's header, else its largest label + 1")
    p.add_argument("--head", metavar="LAYER", help="the layer to resize (default: the one the loss reaches)")
    p.add_argument("-c", "--config", metavar="OVERLAY.yaml", help="a freeze overlay, applied as apply-freeze applies it")
    p.add_argument("--reset-head", action="store_true", help="draw the head anew even when the class count is the same")
    p.add_argument("--weights", metavar="PARAMS", help="parameters (.h5/.protobuf/.nnp) for a project that holds none")
    p.add_argument("--epochs", type=arguments.count)
    p.add_argument("--batch-size", type=arguments.batch)
    p.add_argument("--solver", help="replace the solver (multipliers kept): Sgd, Momentum, Adam, ...")
    p.add_argument("--lr", type=arguments.learning_rate)
    p.add_argument("--seed", type=arguments.seed, default=0, help="the new head's initial values")
    p.set_defaults(func=_cmd_retarget)


def _add_train(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train", parents=[common],
        help="train a project with NNabla, honouring every learning-rate multiplier exactly",
        description="Train PROJECT (.nnp/.nntxt/.prototxt/.protobuf) with NNabla's own loader and solvers. A multiplier m "
        "trains that parameter at lr x m (0: frozen); a Batch Normalization with beta and gamma frozen runs on its running "
        "statistics unless --frozen-bn batch.",
    )
    p.add_argument("project")
    p.add_argument("-o", "--output", required=True, metavar="RESULT_DIR")
    p.add_argument("--weights", metavar="FROM.nnp", help="start from these parameters where name and shape match")
    p.add_argument("--context", default="cpu", choices=["cpu", "cudnn"])
    p.add_argument("--device-id", type=arguments.device, default=0)
    p.add_argument("--epochs", type=arguments.count, help="override the project's max_epoch")
    p.add_argument("--batch-size", type=arguments.batch, help="override the project's batch size")
    p.add_argument("--phases", metavar="OVERLAY.yaml", help="train in phases: an overlay with 'phases', each with its "
                   "epochs, rules and lr_scale, applied to the project as given (e.g. the head alone, then all at 0.1)")
    p.add_argument("--resume", action="store_true", help="continue the run in RESULT_DIR from its last checkpoint, with "
                   "its own settings (--epochs may raise its epoch count; other flags must agree with it)")
    p.add_argument("--frozen-bn", choices=["inference", "batch"],
                   help="a BN whose beta and gamma are frozen: running statistics (inference, the default) or batch ones")
    p.add_argument("--seed", type=arguments.seed, help="data order and dropout (default 0)")
    p.add_argument("--cache-frozen", choices=["auto", "on", "off"],
                   help="compute a frozen, deterministic prefix of the network once per image and train the rest on it "
                   "(default auto)")
    p.add_argument("--cache-budget", type=arguments.size, metavar="SIZE", help="RAM for cached features (e.g. 2G); beyond it a "
                   "memory-mapped file in RESULT_DIR/cache (default: a quarter of memory)")
    p.add_argument("--workers", type=int, metavar="N", help="CPU threads, each on a slice of every batch; the update equals "
                   "one worker's (default: every core; on GPU one process per device)")
    p.set_defaults(func=_cmd_train)


def _add_evaluate(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("evaluate", parents=[common],
                       help="accuracy, per-class table and confusion matrix of a trained project on a dataset CSV")
    p.add_argument("project", metavar="RESULT.nnp")
    p.add_argument("--dataset", required=True, metavar="CSV")
    p.add_argument("-o", "--output", metavar="DIR", help="write confusion_matrix.csv/.png and evaluation.json here")
    p.add_argument("--batch-size", type=arguments.batch, default=64)
    p.set_defaults(func=_cmd_evaluate)


def _add_experiment(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("experiment", parents=[common],
                       help="run a whole experiment (transfer: source pretraining, scratch vs transfer, report)")
    p.add_argument("kind", choices=["transfer"])
    p.add_argument("-c", "--config", metavar="CONFIG.yaml", help="settings (default: the reference experiment; see experiments/)")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR")
    p.add_argument("--synthetic", action="store_true", help="generated CIFAR-format data instead of the real archives")
    p.add_argument("--cifar10", metavar="PATH|URL", help="cifar-10-python.tar.gz (or binary, or a folder, or a URL)")
    p.add_argument("--cifar100", metavar="PATH|URL", help="cifar-100-python.tar.gz (or binary, or a folder, or a URL)")
    p.add_argument("--source-weights", metavar="FROM.nnp", help="skip source pretraining and take these weights")
    p.add_argument("--source-project", metavar="FROM.nnp", help="your own trained project as the source: no pretraining, "
                   "both arms are it retargeted (scratch re-initialised)")
    p.add_argument("--seeds", type=arguments.count, help="repeat both target runs with this many seeds (mean ± std)")
    p.add_argument("--source-epochs", type=arguments.count)
    p.add_argument("--target-epochs", type=arguments.count)
    p.add_argument("--batch-size", type=arguments.batch)
    p.add_argument("--network")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check of official archive names")
    p.set_defaults(func=_cmd_experiment)
