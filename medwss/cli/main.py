"""Entry point: `medwss [--debug] COMMAND ...`.

Exit codes: 0 done; 2 an error (one line on stderr naming the file and the cause; ``--debug``
shows the traceback); 3 a batch in which some cases failed (listed in the job's ``failures.csv``);
130 interrupted. Log lines and warnings of the libraries medwss reads files with (tifffile,
nibabel, pydicom, h5py, PIL, ...) are kept off stderr and appended to ``OUT/medwss.log`` when the
command has an output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from medwss import __version__
from medwss.cli.commands import COMMANDS
from medwss.errors import MedwssError

LIBRARY_LOGGERS = ("tifffile", "nibabel", "pydicom", "h5py", "PIL", "imagecodecs", "openslide", "monai")
"""Loggers whose records go to the run's log file, never to stderr."""
LOG_NAME = "medwss.log"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command (`argv` None), or of the command `argv` names only.

    A command line that names no command (``medwss --help``, ``medwss``, a typo) gets stub parsers
    that list the commands with their help lines and import none of them.
    """
    parser = argparse.ArgumentParser(
        prog="medwss",
        description="Weakly-supervised medical image analysis for CT, MRI and whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"medwss {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    named = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    if argv is not None and named not in COMMANDS:
        for name, (_, text) in COMMANDS.items():
            sub.add_parser(name, help=text)
        return parser
    for module in [COMMANDS[named][0]] if named in COMMANDS else dict.fromkeys(m for m, _ in COMMANDS.values()):
        importlib.import_module(f"medwss.cli.{module}").register(sub)
    return parser


class _Collect(logging.Handler):
    """Keeps formatted records in memory until the command is over."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))


@contextlib.contextmanager
def library_noise_routed(debug: bool) -> Iterator[_Collect]:
    """Route library log records and warnings raised outside medwss into a `_Collect` (not stderr).

    With `debug` nothing is hidden. medwss's own warnings still reach stderr.
    """
    collect = _Collect()
    if debug:
        yield collect
        return
    saved = []
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.propagate, lg.level))
        lg.handlers = [collect]
        lg.propagate = False
        lg.setLevel(logging.WARNING if lg.level == logging.NOTSET else lg.level)  # their warnings and errors
    package = str(Path(__file__).resolve().parents[1])
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if str(filename).startswith(package):
            shown(message, category, filename, lineno, file, line)
        else:
            collect.lines.append(f"warning {category.__name__} ({filename}:{lineno}): {message}")

    warnings.showwarning = showwarning
    try:
        yield collect
    finally:
        warnings.showwarning = shown
        for lg, handlers, propagate, level in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)


def _write_log(args: argparse.Namespace, lines: list[str]) -> None:
    """Append the collected library lines to ``OUT/medwss.log`` when the command has an output folder."""
    out = getattr(args, "out", None)
    if not lines or not out:
        return
    folder = Path(out)
    if not folder.is_dir():
        return
    with contextlib.suppress(OSError), open(folder / LOG_NAME, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def describe_exception(exc: BaseException) -> str:
    """One line for an exception medwss did not raise on purpose, naming the file when the error has one."""
    if isinstance(exc, OSError) and (exc.filename or exc.strerror):
        name = exc.filename if exc.filename is not None else ""
        cause = exc.strerror or type(exc).__name__
        return f"{name}: {cause}" if name else cause
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text} (an unexpected error; rerun with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not sys.stderr.isatty():  # a log file or a pipe: a progress line every 30 s, not one per step
        os.environ.setdefault("TQDM_MININTERVAL", "30")  # read when tqdm is first imported (below)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    debug = bool(getattr(args, "debug", False))
    with library_noise_routed(debug) as collect:
        try:
            if getattr(args, "nan", None) == "keep":  # mil predict|heatmap --nan keep: bags may hold NaN
                from medwss.embed.store import bag_nan_policy

                with bag_nan_policy("keep"):
                    return int(args.func(args) or 0)
            return int(args.func(args) or 0)
        except MedwssError as exc:
            if debug:
                raise
            print(f"medwss: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("medwss: interrupted", file=sys.stderr)
            return 130
        except SystemExit:
            raise
        except Exception as exc:  # the one error path: no traceback unless --debug
            if debug:
                raise
            print(f"medwss: error: {describe_exception(exc)}", file=sys.stderr)
            return 2
        finally:
            _write_log(args, collect.lines)


if __name__ == "__main__":
    sys.exit(main())
