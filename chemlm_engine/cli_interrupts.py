"""Ctrl-C and SIGTERM in the CLI: one KeyboardInterrupt, raised where it ends the command cleanly, then exit code 130
and one line saying what was kept, whatever the moment the signal came."""
from __future__ import annotations

import os
import signal
import threading

import typer

__all__ = ["install", "say_interrupted", "interruption_said"]

_STATE = {"said": False}


def install() -> None:
    """SIGINT and SIGTERM stop the command as Ctrl-C does."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _interrupt)


def _interrupt(number: int, frame) -> None:
    """Raise KeyboardInterrupt once: later signals are ignored (SIG_IGN) while the command stops (helpers ended, what
    was kept said, Python's own exit: a second or two), or one would cut that short and end the process by SIGINT (-2;
    Python's exit puts a handler written in Python back to the default first). Not inside code that exec() or eval()
    compiled from a string (a dataclass being made, an annotation read, as lazy imports do): CPython then exits by
    SIGINT although the command stopped cleanly. There the signal comes again 10 ms later."""
    while frame is not None:
        if frame.f_code.co_filename == "<string>":
            again = threading.Timer(0.01, os.kill, (os.getpid(), number))
            again.daemon = True  # a process already ending does not wait for it
            again.start()
            return
        frame = frame.f_back
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    raise KeyboardInterrupt


def say_interrupted(text: str) -> None:
    """Say on stderr what an interrupted command kept (``interrupted: …``); the command then exits 130."""
    _STATE["said"] = True
    typer.echo(f"interrupted: {text}", err=True)


def interruption_said() -> bool:
    """Whether the interrupted command said what it kept (else the entry point says that nothing was written)."""
    return _STATE["said"]
