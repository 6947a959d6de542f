"""`dataset`: an NNC-format dataset built from a CIFAR archive (or generated)."""

from __future__ import annotations

import argparse

from . import arguments


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    _add_dataset(sub, common)


def _cmd_dataset(args: argparse.Namespace) -> int:
    from ..data.recipes import make_dataset

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
