"""The `nnc-tl` command: argument parsing and printing only, one module a command group (``project_files``,
``networks``, ``models``, ``datasets``, ``retarget``, ``training``, ``experiment``), each subcommand a small ``_add_*`` (its
arguments) and ``_cmd_*`` (one library call, then printing) pair; ``printing`` holds what several commands print alike,
``arguments`` the argument types, ``demo`` is `make demo`. May import every layer below; nothing imports it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import List, Optional

# NNabla logs INFO lines ("Initializing CPU extension...") on import; keep the console for our output.
logging.getLogger("nnabla").setLevel(os.environ.get("NNC_TL_NNABLA_LOG", "WARNING"))

from .. import __version__  # noqa: E402
from ..errors import NncToolsError, SettingError  # noqa: E402
from . import arguments, datasets, experiment, models, networks, project_files, retarget, training  # noqa: E402

COMMAND_GROUPS = (project_files, networks, models, datasets, retarget, training, experiment)


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

    for group in COMMAND_GROUPS:
        group.add_commands(sub, common)
    return parser


def _as_the_user_said_it(error: NncToolsError, args: argparse.Namespace) -> str:
    """The error's line; a setting the command took as a flag is named as that flag (``frozen_bn`` -> ``--frozen-bn``)."""
    if isinstance(error, SettingError) and error.path is None and hasattr(args, error.setting):
        return "--" + error.setting.replace("_", "-") + str(error)[len(error.setting):] + f" (see nnc-tl {args.command} --help)"
    return str(error)


_MAIN_PID = os.getpid()


def _interrupt(signum, frame):
    """SIGTERM in nnc-tl itself: as Ctrl-C. In a worker process it inherited the handler with (a pool's, which
    multiprocessing ends with SIGTERM), the default: the worker ends, as the pool expects."""
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


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
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None  # as Ctrl-C: outputs under way removed
    handler = _report_on_stderr(args.verbosity)
    try:
        return args.func(args)
    except NncToolsError as e:
        print("nnc-tl: error: " + " ".join(_as_the_user_said_it(e, args).split()), file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`| head -1`): what it did not read is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
    except OSError as e:
        if e.filename is None:
            raise
        # a path the user gave that the system refuses outright (a name over its length limit, a folder without access)
        print(f"nnc-tl: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnc-tl: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logger = logging.getLogger("nnc_tools")
        logger.removeHandler(handler)
        logger.propagate = True


if __name__ == "__main__":
    sys.exit(main())
