"""Stopping the tool: Ctrl-C, SIGTERM (`kill`, a container stopping, a job scheduler) and
SIGHUP (the terminal closed) all stop a run the same way, leaving OUT consistent and
resumable, and end the process with the shell's code for that signal (130, 143, 129).

The entry point's first line (augment/__main__.py) holds the signals: one that arrives
while the tool starts is kept, not raised in whatever line of whatever import was running,
and `run` raises it where the command is ready to stop on it, so a signal during start-up
is the message too, not a traceback. Before that line only the interpreter's own start-up
runs (and what a site's .pth files import). The pool's workers undo the handlers
(augment/stages/executor.py): the main process alone decides how a run stops.
"""

from __future__ import annotations

# Only modules the interpreter has loaded by now or that are built in: `hold` runs before
# the rest of the tool, so nothing slow may come before it.
import contextlib
import errno
import gc
import signal
import sys

TYPE_CHECKING = False  # not typing's: see augment/__init__.py
if TYPE_CHECKING:
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


_held: list[int] = []  # signals that arrived while held, in order
_taken: list[int] = []  # signals whose handler `hold` replaced


def _hold_signal(signum: int, _frame: FrameType | None) -> None:
    _held.append(signum)


def hold() -> None:
    """From now until `run` is ready, a SIGINT, SIGTERM or SIGHUP is kept for `run` to raise.
    A signal this process was started ignoring (SIGINT in a background job, SIGHUP under
    nohup) stays ignored."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _hold_signal)
            _taken.append(signum)


def install() -> None:
    """SIGTERM and SIGHUP raise `Stopped` in the main thread, as SIGINT raises
    KeyboardInterrupt (a signal ignored from the start stays ignored); a signal `hold` kept
    is raised now."""
    for signum in _taken or (signal.SIGTERM, signal.SIGHUP):
        if signum == signal.SIGINT:
            signal.signal(signum, signal.default_int_handler)
        elif signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise_stopped)
    if _held:
        signum = _held[0]
        _held.clear()
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)


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
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except Exception:  # not CPython, or another version of its internals: nothing to clear
        pass


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
    process by that signal (-2) instead of with the exit code the command chose.

    And the objects made so far are left out of the collections the interpreter runs as it
    shuts down: they would examine every object the libraries made (albumentations' and
    pydantic's classes, hundreds of thousands), ~0.1 s of CPU to free memory that the exit
    frees anyway (benchmarks/startup.py). Everything the command wrote is closed by now;
    atexit handlers still run, and objects without cycles are still freed as usual."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _handled()
    gc.freeze()


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
        install()
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
