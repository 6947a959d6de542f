"""`train` and `evaluate`: NNabla training that honours every multiplier, and a trained project measured."""

from __future__ import annotations

import argparse

from . import arguments


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    _add_train(sub, common)
    _add_evaluate(sub, common)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training.train import TrainOptions, train

    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, context=args.context, device_id=args.device_id,
                           weights=args.weights, resume=args.resume, seed=args.seed, frozen_bn=args.frozen_bn,
                           cache_frozen=args.cache_frozen, cache_budget=args.cache_budget, workers=args.workers,
                           phases=args.phases, solver=args.solver, lr=args.lr,
                           allow_frozen_initial=args.allow_frozen_initial)
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
    from ..training.evaluate import evaluate, format_evaluation

    result = evaluate(args.project, args.dataset, args.output, batch_size=args.batch_size)
    print(format_evaluation(result))
    if args.output:
        print(f"wrote {args.output}/confusion_matrix.csv, confusion_matrix.png, evaluation.json")
    return 0


def _add_train(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train", parents=[common],
        help="train a project with NNabla, honouring every learning-rate multiplier exactly",
        description="Train PROJECT (.nnp/.nntxt/.prototxt/.protobuf) with NNabla's own loader and solvers. A multiplier m "
        "trains that parameter at lr x m (0: frozen); a Batch Normalization with beta and gamma frozen runs on its running "
        "statistics unless --frozen-bn batch.",
    )
    p.add_argument("project", help="a project file, or a training run's result folder (its results.nnp)")
    p.add_argument("-o", "--output", required=True, metavar="RESULT_DIR")
    p.add_argument("--weights", metavar="FROM.nnp", help="start from these parameters where name and shape match")
    p.add_argument("--allow-frozen-initial", action="store_true", help="train even when a parameter the project keeps "
                   "frozen has no values (it stays at its random initial value)")
    p.add_argument("--context", default="cpu", choices=["cpu", "cudnn"])
    p.add_argument("--device-id", type=arguments.device, default=0)
    p.add_argument("--epochs", type=arguments.count, help="override the project's max_epoch")
    p.add_argument("--batch-size", type=arguments.batch, help="override the project's batch size")
    p.add_argument("--solver", help="replace the project's solver (multipliers kept): Sgd, Momentum, Adam, ...")
    p.add_argument("--lr", type=arguments.learning_rate, help="the learning rate (of --solver, or of the project's solver)")
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
                       help="accuracy, per-class table and confusion matrix of a trained project on a dataset CSV",
                       description="Run the project's executor network (NNC's MainRuntime) on every row of a dataset CSV "
                       "and print the accuracy and each class's precision, recall and support; with -o also the confusion "
                       "matrix (CSV and PNG) and evaluation.json. The CSV's header must name the classes the project was "
                       "trained on (when both name them), and its images are scaled as the project says "
                       "(no_image_normalization).")
    p.add_argument("project", metavar="RESULT.nnp", help="a trained project, or a training run's result folder")
    p.add_argument("--dataset", required=True, metavar="CSV", help="an NNC dataset CSV (x:image,y:label;names...)")
    p.add_argument("-o", "--output", metavar="DIR", help="write confusion_matrix.csv/.png and evaluation.json here")
    p.add_argument("--batch-size", type=arguments.batch, default=64, help="images per forward pass (default 64)")
    p.set_defaults(func=_cmd_evaluate)
