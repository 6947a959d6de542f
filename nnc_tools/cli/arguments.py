"""What the command line accepts: argument types that check range as well as form, and a parser whose usage errors are
one line, like every other error (exit 2)."""

from __future__ import annotations

import argparse
import math

MAX_BATCH = 1 << 16  # a batch of 65,536 3x32x32 images is 800 MB of floats; NNabla aborts on what it cannot allocate


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line: ``nnc-tl train: error: ... (see nnc-tl train --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _whole(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected {what} from {low:,} to {high:,}, got {value:,}")
    return value


def count(text: str) -> int:
    return _whole(text, 1, 1 << 20, "a whole number")


def batch(text: str) -> int:
    return _whole(text, 1, MAX_BATCH, "a batch size")


def seed(text: str) -> int:
    return _whole(text, 0, 2**31 - 1, "a seed")


def device(text: str) -> int:
    return _whole(text, 0, 1023, "a device index")


def classes(text: str) -> int:
    return _whole(text, 2, 1 << 20, "a class count")


def learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite learning rate > 0, got '{text}'")
    return value


def size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    suffixed = text[-1:].isalpha()
    number, unit = (text[:-1], text[-1:].upper()) if suffixed else (text, "")
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 2G, got '{text}'") from None


def shape(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got '{text}'") from None
