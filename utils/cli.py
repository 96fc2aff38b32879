"""The shared command-line parsers and the error handling every script uses."""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, NoReturn

from utils.errors import UserError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show every option's default (unless the help text already says it) and keep the description's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or \
                action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every script's conventions: defaults in --help, and a bad option is one line and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem (not the whole usage) and exit 2."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def refuse_old_spelling(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Make `old` (a former option name, hidden from --help) one error line pointing at `new`."""
    class Renamed(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            parser.error(f"{old} is now {new}")

    parser.add_argument(old, action=Renamed, nargs="?", help=argparse.SUPPRESS)


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        value = int(_number(text, int))
        if value < low or (high is not None and value > high):
            accepted = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be an integer {accepted}, got {value}")
        return value
    return parse


def float_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in the interval from low to high (each end open or closed)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        value = float(_number(text, float))
        inside = math.isfinite(value) and (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)
        if not inside:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value
    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(_number(text, float))
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = float(_number(text, float))
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type from a parser that raises UserError, so the problem is reported at parse time."""
    def wrapper(text: str) -> Any:
        try:
            parse(text)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text
    return wrapper


MIN_INPUT_SIZE = 16  # four 2x poolings leave at least 1 pixel; every model takes any size from here up
MAX_CLASSES = 255  # 255 is the ignore value
# Past this the tiles' stride shrinks towards 1 pixel and a large image becomes millions of tiles.
MAX_OVERLAP = 0.9


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """--device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N")


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's main: a UserError becomes one 'error:' line and exit code 2."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, a full disk: the path and reason suffice
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
