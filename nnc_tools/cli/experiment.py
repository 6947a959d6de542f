"""`experiment transfer`: the whole scratch-vs-transfer comparison in one command."""

from __future__ import annotations

import argparse

from . import arguments


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    _add_experiment(sub, common)


def _cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..experiment.config import load_config
    from ..experiment.report import headline
    from ..experiment.transfer import run_transfer

    own = {key: str(Path(value).resolve()) for key, value in (("overlay", args.overlay), ("fine_tune", args.fine_tune)) if value}
    config = load_config(args.config, seeds=args.seeds, source_epochs=args.source_epochs, target_epochs=args.target_epochs,
                         batch_size=args.batch_size, network=args.network, **own)
    report = run_transfer(args.output, config, synthetic=args.synthetic, cifar10=args.cifar10, cifar100=args.cifar100,
                          source_weights=args.source_weights, source_project=args.source_project, verify=not args.no_verify)
    print(headline(args.output))
    print(f"report: {report} (and {report.with_suffix('.md')})")
    return 0


def _add_experiment(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("experiment", parents=[common],
                       help="run a whole experiment (transfer: source pretraining, then the arms: scratch, transfer, "
                       "fine-tune; report)",
                       description="The reference experiment in one command: the datasets, the source pretrained (or "
                       "--source-weights / --source-project), then each arm of the config's arms (scratch: the network "
                       "from scratch; transfer: the source weights with the freeze overlay; fine-tune: the source weights "
                       "trained in the phases of fine_tune) for every seed, each evaluated on the target's test set, and "
                       "report.md / report.html. A re-run skips finished stages.")
    p.add_argument("kind", choices=["transfer"])
    p.add_argument("-c", "--config", metavar="CONFIG.yaml", help="settings (default: the reference experiment; see experiments/)")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR")
    p.add_argument("--synthetic", action="store_true", help="generated CIFAR-format data instead of the real archives")
    p.add_argument("--cifar10", metavar="PATH|URL", help="cifar-10-python.tar.gz (or binary, or a folder, or a URL)")
    p.add_argument("--cifar100", metavar="PATH|URL", help="cifar-100-python.tar.gz (or binary, or a folder, or a URL)")
    p.add_argument("--source-weights", metavar="FROM.nnp", help="skip source pretraining and take these weights")
    p.add_argument("--source-project", metavar="FROM.nnp", help="your own trained project, or imagenet:NAME (a published "
                   "ImageNet model, see nnc-tl models), as the source: no pretraining, both arms are it retargeted "
                   "(scratch re-initialised)")
    p.add_argument("--overlay", metavar="OVERLAY.yaml", help="the transfer arm's freeze overlay (with --source-project: "
                   "written for your network; default there: every parameterised layer but the last frozen)")
    p.add_argument("--fine-tune", metavar="PHASES.yaml", help="the fine-tune arm's phases (with --source-project default: "
                   "the head alone for a fifth of the epochs, then every layer at a tenth of the rate)")
    p.add_argument("--seeds", type=arguments.count, help="repeat every arm with this many seeds (mean ± std, paired differences)")
    p.add_argument("--source-epochs", type=arguments.count)
    p.add_argument("--target-epochs", type=arguments.count)
    p.add_argument("--batch-size", type=arguments.batch)
    p.add_argument("--network")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check of official archive names")
    p.set_defaults(func=_cmd_experiment)
