"""Stopping the tool: Ctrl-C, SIGTERM (`kill`, a container stopping, a job scheduler) and
SIGHUP (the terminal closed) all stop a run the same way, leaving OUT consistent and
resumable, and end the process with the shell's code for that signal (130, 143, 129).

The handlers are installed before anything heavy is imported, so a signal during start-up
is a message too, not a traceback. The pool's workers undo them (augment/stages/executor.py):
the main process alone decides how a run stops.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
from collections.abc import Callable
from types import FrameType

MESSAGE = "interrupted: finished work is kept; rerun the same command to resume"


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would be: every Ctrl-C path handles it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def install() -> None:
    """SIGTERM and SIGHUP raise `Stopped` in the main thread, as SIGINT raises
    KeyboardInterrupt (a SIGHUP already ignored, as under nohup, stays ignored)."""
    signal.signal(signal.SIGTERM, _raise_stopped)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _raise_stopped)


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process its signal ended."""
    return 128 + (exc.signum if isinstance(exc, Stopped) else signal.SIGINT)


def say_interrupted(exc: KeyboardInterrupt) -> int:
    """Tell the user (if the terminal is still there) and return the exit code."""
    with contextlib.suppress(OSError, ValueError):  # a closed terminal (SIGHUP), a closed pipe
        print("\n" + MESSAGE, file=sys.stderr, flush=True)
    _handled()
    return exit_code(exc)


def _handled() -> None:
    """CPython 3.11 marks a KeyboardInterrupt raised inside `exec` of a string (scipy runs
    one on import) as unhandled for good, and then ends the process by SIGINT (-2), not
    with the exit code given: the mark is cleared once the interrupt is handled."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0


def interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt behind `exc`, if any. Python wraps an exception raised while a class is
    made (`__set_name__`, as pydantic models are made when albumentations is imported) in a
    RuntimeError: a Ctrl-C at that moment arrives as one."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _finished() -> None:
    """The command is done: a signal now, while the interpreter shuts down, would end the
    process by that signal (-2) instead of with the exit code the command chose."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _handled()


def refused_resource(exc: BaseException) -> str | None:
    """What to tell the user when `exc` says the system refused the run a thread or a
    process (a process limit: `ulimit -u`, a container's pids limit), else None."""
    cause: BaseException | None = exc
    while cause is not None:
        thread = isinstance(cause, RuntimeError) and "can't start new thread" in str(cause)
        fork = isinstance(cause, OSError) and cause.errno == errno.EAGAIN
        if thread or fork:
            return (
                f"the system refused a new {'thread' if thread else 'process'} ({cause}): "
                "a limit on processes is reached (ulimit -u, a container's pids limit); "
                "finished work is kept: rerun the same command to resume, with fewer "
                "--workers or a higher limit"
            )
        cause = cause.__cause__ or cause.__context__
    return None


def _refused_resource(raised: BaseException) -> None:
    """A thread or process the system refused (a process limit) is the user's to fix, at
    any point of any command: a message and exit 2, not a traceback (the run journaled
    what it had made, augment/full_run.py)."""
    message = refused_resource(raised)
    if message is not None:
        with contextlib.suppress(OSError, ValueError):
            print(f"Error: {message}", file=sys.stderr, flush=True)
        _finished()
        sys.exit(2)  # AugmentError.exit_code: the user's to fix


def run(main: Callable[[], object]) -> None:
    """Run the command `main` (imported inside it, so its import is covered too)."""
    try:
        main()
        _finished()
    except SystemExit:
        # An exit already chosen (click's, the CLI's own after an interrupt) stays as it is,
        # even where a library caught a Ctrl-C inside an `exec` (see `_handled`).
        _finished()
        raise
    except BaseException as raised:
        exc = interrupt_in(raised)
        if exc is None:
            _refused_resource(raised)
            raise
        code = say_interrupted(exc)
        # Nothing more may reach a terminal that is gone, not even at exit.
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        sys.exit(code)
