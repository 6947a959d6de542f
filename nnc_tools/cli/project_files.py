"""`info`, `convert` and `apply-freeze`: reading, converting and freezing the user's project files."""

from __future__ import annotations

import argparse
import json
import sys

from .printing import print_property_edits, print_weights, printable


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    _add_info(sub, common)
    _add_convert(sub, common)
    _add_apply_freeze(sub, common)


def _cmd_info(args: argparse.Namespace) -> int:
    from ..project.info import describe, format_description

    info = describe(args.project, args.params)
    print(json.dumps(printable(info), indent=2, default=str) if args.json else format_description(info))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..formats.nnp import load_project, save_project

    project = load_project(args.src, args.params)
    written = save_project(project, args.dst, parameter_format=args.param_format, inputs=[args.src, *args.params])
    for path in written:
        print(f"wrote {path}")
    return 0


def _cmd_apply_freeze(args: argparse.Namespace) -> int:
    from ..project.freeze import apply_freeze
    from ..project.matching import format_changes

    result = apply_freeze(args.project, args.config, args.output, dry_run=args.dry_run, weights=args.weights,
                          job_dir=args.job_dir, allow_frozen_initial=args.allow_frozen_initial)
    print(f"overlay {result.overlay} on {result.project}")
    print(format_changes(result.changes))
    if result.weights is not None:
        print_property_edits(result.references)
        print_weights(result.weights)
    for warning in result.warnings:
        print(f"nnc-tl: warning: {warning}", file=sys.stderr)
    if args.dry_run:
        print("dry run: nothing written")
    elif result.output is not None:
        print(f"wrote {result.output}")
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
    p.add_argument("src", help="the project to read: .nnp, .nntxt/.prototxt (with .h5/.protobuf beside it) or .protobuf")
    p.add_argument("dst", help="the project to write; its extension chooses the format")
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
    p.add_argument("-c", "--config", metavar="OVERLAY.yaml",
                   help="the freeze overlay, or a shipped one: last-fc-only (only the head trains), all (everything trains)")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of rewriting PROJECT (same extension)")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--weights", metavar="FROM.nnp", help=".sdcproj: NNC's 'Open in EDIT Tab with Weight': every layer "
                   "parameter FROM.nnp has gets a W.File/b.File/... reference NNC's runner loads")
    p.add_argument("--job-dir", metavar="DIR", help="with --weights: copy FROM.nnp to DIR/results.nnp (DIR's name is the "
                   "job id; default <output stem>.weights/nnctl_<hash>, unless FROM.nnp is in NNC's results already)")
    p.add_argument("--allow-frozen-initial", action="store_true", help="with --weights: write the project even when a "
                   "parameter it freezes gets no weights (it then trains frozen at its random initial value)")
    p.set_defaults(func=_cmd_apply_freeze)
