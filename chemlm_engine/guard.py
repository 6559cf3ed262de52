"""Per-molecule limits: inputs are parsed and standardised in a helper process, so one pathological molecule
(RDKit can spend minutes and gigabytes on some ring systems, and holds the interpreter lock meanwhile) costs
its own row an error after ``PARSE_SECONDS`` instead of stalling the batch, and the main process stays
responsive to Ctrl-C and SIGTERM while it waits.

The helper reports results in small groups; when it stops reporting for ``PARSE_SECONDS`` it is killed
(SIGKILL works inside RDKit) and the molecules it had not reported are redone one at a time, so the one
that stalls is found and only it gets the error. It also runs under a memory limit (``PARSE_MEMORY``) and
ends itself when the process that started it dies.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection

from .molecules import PreparedSmiles, Standardization, prepare_smiles

__all__ = ["PARSE_SECONDS", "PARSE_MEMORY", "prepare_all", "exit_with", "engine_main"]

log = logging.getLogger(__name__)

PARSE_SECONDS = 10.0  # typical molecules take well under a millisecond
PARSE_MEMORY = 4 << 30  # bytes of address space the helper may add to what it holds after start-up
_GROUP_SECONDS = 0.05  # the helper sends what it has at least this often (while it is not stuck)
_GROUP_SIZE = 512
_START_SECONDS = 300.0  # for a new helper to start and take a batch: not part of any molecule's limit

Prepare = Callable[[object, Standardization], PreparedSmiles]


def exit_with(parent: int) -> None:
    """In a helper process: end it once ``parent`` is gone (killed, even by SIGKILL), so a killed app or CLI
    leaves no orphan. (Linux's PR_SET_PDEATHSIG follows the starting *thread*, in the app a short-lived one.)"""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _serve(conn: Connection, parent: int, memory: int) -> None:
    exit_with(parent)
    with open("/proc/self/statm") as statm:  # the limit is on top of what the interpreter already maps
        held = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (held + memory, resource.RLIM_INFINITY))
    while True:
        try:
            texts, standardization, prepare, one_by_one = conn.recv()
        except EOFError:
            return
        conn.send(None)  # received and unpickled: the per-molecule clock starts now, not at start-up
        group: list[PreparedSmiles] = []
        started = time.monotonic()
        for text in texts:
            try:
                group.append(prepare(text, standardization))
            except MemoryError:
                group.append(PreparedSmiles("" if text is None else str(text), None,
                                            f"needs more than {memory >> 30} GiB to read"))
            if one_by_one or len(group) >= _GROUP_SIZE or time.monotonic() - started > _GROUP_SECONDS:
                conn.send(group)
                group, started = [], time.monotonic()
        if group:  # never an empty message: the next batch's acknowledgement must be the next thing read
            conn.send(group)


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def engine_main() -> Iterator[None]:
    """Start spawned processes inside this: a spawned child first imports the parent's ``__main__``, and during a
    Streamlit script run that is the page script itself, which the child would run again in bare mode (~40
    "missing ScriptRunContext" warnings per job, seconds of work). Meanwhile ``__main__`` is this module."""
    with _MAIN_LOCK:
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = sys.modules[__name__]
        try:
            yield
        finally:
            sys.modules["__main__"] = saved


class _Helper:
    """One helper process and its pipe; replaced after a kill or a crash."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # safe beside the app's threads
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, os.getpid(), PARSE_MEMORY), daemon=True,
                                       name="chemlm-parse")
        with engine_main():
            self.process.start()
        child.close()

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


_HELPER: _Helper | None = None
_LOCK = threading.Lock()  # one batch at a time through the helper (the app's sessions and jobs may ask at once)


class _NotStarted(Exception):
    pass


def _started(pending: list, standardization: Standardization, prepare: Prepare, one_by_one: bool) -> _Helper:
    """The helper, holding the batch: it has received and unpickled it, so the per-molecule clock starts now
    (a new helper first imports RDKit, which a busy machine may take many seconds for)."""
    global _HELPER
    try:
        if _HELPER is None or not _HELPER.process.is_alive():
            _HELPER = _Helper()
    except (OSError, AssertionError) as exc:  # e.g. inside a daemonic process, which may not have children
        raise _NotStarted(f"no helper process can start here ({exc!r})") from None
    try:
        _HELPER.conn.send((pending, standardization, prepare, one_by_one))
        if not _HELPER.conn.poll(_START_SECONDS):
            raise _NotStarted(f"the helper process took no batch within {_START_SECONDS:g} s")
        _HELPER.conn.recv()
    except (EOFError, OSError) as exc:
        _stop()
        raise _NotStarted(f"the helper process ended before taking the batch ({exc!r})") from None
    except BaseException:
        _stop()
        raise
    return _HELPER


def _stop() -> None:
    global _HELPER
    if _HELPER is not None:
        _HELPER.stop()
    _HELPER = None


def prepare_all(texts: Sequence[object], standardization: Standardization = Standardization(),
                seconds: float = PARSE_SECONDS, prepare: Prepare = prepare_smiles) -> list[PreparedSmiles]:
    """:func:`~chemlm_engine.molecules.prepare_smiles` for every input, in order, each within ``seconds``
    and ``PARSE_MEMORY``; a molecule beyond either gets an error instead. ``prepare`` (a module-level
    function) replaces the per-molecule step in tests."""
    texts = list(texts)
    out: list[PreparedSmiles] = []
    with _LOCK:
        one_by_one = False
        while len(out) < len(texts):
            pending = texts[len(out):] if not one_by_one else texts[len(out):len(out) + _GROUP_SIZE]
            try:
                helper = _started(pending, standardization, prepare, one_by_one)
            except _NotStarted as exc:  # no helper process here: read in this process, without the limits
                log.warning("%s: reading %d molecule(s) without the per-molecule limits", exc, len(pending))
                out.extend(prepare(text, standardization) for text in pending)
                continue
            done = 0
            try:
                while done < len(pending):
                    if not helper.conn.poll(seconds):
                        raise TimeoutError
                    group = helper.conn.recv()
                    out.extend(group)
                    done += len(group)
                one_by_one = False
            except (TimeoutError, EOFError, OSError) as exc:
                _stop()
                if one_by_one or done == len(pending) - 1:  # the stalled molecule is known: the first unreported
                    text = pending[done]
                    why = (f"took longer than {seconds:g} s to read (RDKit): skipped" if isinstance(exc, TimeoutError)
                           else "RDKit crashed or ran out of memory reading it: skipped")
                    out.append(PreparedSmiles("" if text is None else str(text), None, why))
                    one_by_one = False
                else:  # somewhere among the unreported ones: redo them one at a time
                    one_by_one = True
            except BaseException:  # Ctrl-C / SIGTERM while waiting: the helper may be mid-batch
                _stop()
                raise
    return out
