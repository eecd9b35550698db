"""The ``breaker`` command: exit statuses, the context commands run in, the parser, `main`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn, TextIO

from breaker._duration import MAX_NS, format_go_duration, parse_go_duration
from breaker._exceptions import CoordError
from breaker._policy import MAX_SECONDS

EXIT_OK = 0
EXIT_INVALID = 1
"""An invalid document, or a refused change (a concurrent edit, no such document)."""
EXIT_USAGE = 2
EXIT_ERROR = 3
"""Anything else: Consul unreachable, permission denied, bad connection settings."""

Now = Callable[[], datetime]
Run = Callable[[argparse.Namespace, "Context"], int]

_EPILOG = """\
exit status: 0 success; 1 an invalid document, or a refused or impossible change (a
concurrent edit, no such document, a change that would break other documents); 2 a usage
error; 3 any other error (Consul unreachable, permission denied, bad connection settings)."""
_DURATION_OPTIONS = ("--for", "--timeout")


class CLIError(Exception):
    """Raise to end a command with ``message`` on stderr and exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    """What a command reads and writes besides its arguments; tests replace each part."""

    now: Now
    stop: threading.Event
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO

    def out(self, text: str = "", *, flush: bool = False) -> None:
        """Print a line of the command's result."""
        print(text, file=self.stdout, flush=flush)

    def err(self, text: str) -> None:
        """Print a line for the operator: a warning, an error, the watch's news."""
        print(text, file=self.stderr, flush=True)

    def wall(self) -> float:
        """Return `now` as Unix seconds: the wall clock the layers read modes with."""
        return self.now().timestamp()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


def duration(text: str) -> float:
    """Read ``--for`` or ``--timeout``: a Go duration ("15m", "1h30m") or seconds."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_go_duration(text) / 1e9
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (use e.g. 15m, 1h30m or 900)") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    if seconds > MAX_SECONDS:
        longest = format_go_duration(MAX_NS)
        raise argparse.ArgumentTypeError(
            f"{text!r} is longer than the longest duration ({longest})"
        )
    return seconds


def index(text: str) -> int:
    """Read ``--index``: a ModifyIndex, an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a ModifyIndex (an integer >= 0), got {text!r}")
    return value


class Commands:
    """What a group of commands adds its commands with: the subparsers and shared options."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self.output = argparse.ArgumentParser(add_help=False)
        self.output.add_argument("--json", action="store_true", help="print JSON, for scripts")
        from breaker._cli._client import consul_parent, history_parent, path_parent

        self.consul = consul_parent()
        self.path = path_parent()
        self.history = history_parent(write=False)
        self.write = history_parent(write=True)

    def add(
        self,
        name: str,
        run: Run,
        help: str,
        *,
        output: bool = True,
        consul: bool = True,
        path: bool | None = None,
        history: str | None = None,
        subparsers: Any = None,
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> argparse.ArgumentParser:
        """Add command ``name`` that ``run`` runs, with ``--json``, Consul's options, ``--path``
        (with ``consul`` unless told) and the history's (``history``: "read" or "write")."""
        wanted = (
            (self.output, output),
            (self.consul, consul),
            (self.path, consul if path is None else path),
            (self.history, history == "read"),
            (self.write, history == "write"),
        )
        sub: argparse.ArgumentParser = (subparsers or self._subparsers).add_parser(
            name, help=help, description=help, parents=[*(p for p, on in wanted if on), *parents]
        )
        sub.set_defaults(run=run)
        return sub

    def group(self, name: str, help: str) -> Any:
        """Add command ``name`` whose own commands follow it (``breaker canary start``)."""
        parser = self._subparsers.add_parser(name, help=help, description=help)
        return parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``breaker`` command."""
    from breaker import __version__
    from breaker._cli import _canary, _documents, _explain, _fleet, _history, _modes, _watch

    parser = _Parser(
        prog="breaker",
        description="Check, read and change the circuit-breaker policies in Consul KV.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"breaker {__version__}")
    commands = Commands(parser)
    for group in (_documents, _modes, _history, _canary, _explain, _watch, _fleet):
        group.register(commands)
    return parser


def _join_durations(argv: Sequence[str]) -> list[str]:
    """Keep ``--for -5m`` one option: argparse would take ``-5m`` for an option of its own."""
    joined: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in _DURATION_OPTIONS:
            value = next(args, None)
            if value is not None and value.startswith("-") and value != "--":
                joined.append(f"{arg}={value}")
                continue
            joined.append(arg)
            if value is not None:
                joined.append(value)
            continue
        joined.append(arg)
    return joined


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _fail(ctx: Context, message: str, code: int) -> int:
    ctx.err(f"breaker: {message}")
    return code


def main(
    argv: Sequence[str] | None = None,
    *,
    now: Now | None = None,
    stop: threading.Event | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the ``breaker`` command with ``argv`` (default: the process's); return its status.

    The keywords are for tests: ``now`` returns an aware UTC datetime, ``stop`` ends
    ``watch`` as Ctrl-C does, and the streams default to the process's.
    """
    ctx = Context(
        now=now or _utcnow,
        stop=stop or threading.Event(),
        stdin=stdin or sys.stdin,
        stdout=stdout or sys.stdout,
        stderr=stderr or sys.stderr,
    )
    # The CLI reports what matters itself; without this, Python's last-resort handler would
    # print the library's own warnings (the watcher's retries) in between.
    quiet = logging.NullHandler()
    logging.getLogger("breaker").addHandler(quiet)
    try:
        try:
            with contextlib.redirect_stdout(ctx.stdout), contextlib.redirect_stderr(ctx.stderr):
                args = build_parser().parse_args(
                    _join_durations(sys.argv[1:] if argv is None else argv)
                )
        except SystemExit as exc:  # --help or --version
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        run: Any = args.run
        code: int = run(args, ctx)
        ctx.stdout.flush()  # here, where a closed pipe can still be reported as one
        return code
    except CLIError as exc:
        prefix = "error: " if exc.code in (EXIT_USAGE, EXIT_ERROR) else ""
        return _fail(ctx, f"{prefix}{exc}", exc.code)
    except CoordError as exc:
        return _fail(ctx, f"error: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail(ctx, "interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`breaker ls | head -1`): say nothing more, and keep Python
        # from reporting the failed flush of stdout at exit.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), ctx.stdout.fileno())
        return EXIT_ERROR
    finally:
        logging.getLogger("breaker").removeHandler(quiet)
