"""Per-molecule limits: inputs are parsed and standardised in helper processes, so one pathological molecule
(RDKit can spend minutes and gigabytes on some ring systems, and holds the interpreter lock meanwhile) costs
its own row an error after ``PARSE_SECONDS`` instead of stalling the batch, and the main process stays
responsive to Ctrl-C and SIGTERM while it waits. A large batch is shared among one helper per core
(:func:`worker_processes`), each with its own limits.

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
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from .molecules import PreparedSmiles, Standardization, prepare_smiles

__all__ = ["PARSE_SECONDS", "PARSE_MEMORY", "prepare_all", "exit_with", "engine_main", "worker_processes",
           "contiguous_shares"]

log = logging.getLogger(__name__)

PARSE_SECONDS = 10.0  # typical molecules take well under a millisecond
PARSE_MEMORY = 4 << 30  # bytes of address space the helper may add to what it holds after start-up
_GROUP_SECONDS = 0.05  # the helper sends what it has at least this often (while it is not stuck)
_GROUP_SIZE = 512
_START_SECONDS = 300.0  # for a new helper to start and take a batch: not part of any molecule's limit
_SHARE_MIN = 128  # molecules per helper at least: reading one takes ~0.6 ms, starting a helper ~1 s (once)
_MAX_PROCESSES = 8  # each helper holds ~60-80 MB (RDKit)

Prepare = Callable[[object, Standardization], PreparedSmiles]


def worker_processes() -> int:
    """How many processes may share a batch's per-molecule work: one per core this process may use, at most 8."""
    return min(len(os.sched_getaffinity(0)), _MAX_PROCESSES)


def contiguous_shares(items: list, count: int) -> list[list]:
    """``items`` cut into ``count`` contiguous shares of near-equal size, in order."""
    bounds = [len(items) * k // count for k in range(count + 1)]
    return [items[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def exit_with(parent: int) -> None:
    """In a helper process: its life is ``parent``'s to decide. It ends once ``parent`` is gone (killed, even by
    SIGKILL), so a killed app or CLI leaves no orphan (Linux's PR_SET_PDEATHSIG follows the starting *thread*, in
    the app a short-lived one); and it ignores Ctrl-C, which reaches the terminal's whole process group: the
    parent handles it and ends its helpers, which would otherwise each print a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

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
    "missing ScriptRunContext" warnings per job, seconds of work). Meanwhile ``__main__`` is a module without a
    file or name, so a child imports none (naming an engine module made a forkserver's job, which had imported it
    already, run it again: runpy's "found in sys.modules … unpredictable behaviour" warning on every job)."""
    with _MAIN_LOCK:
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
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


_HELPERS: dict[int, _Helper] = {}  # by share of a batch: 0, 1, ...
_LOCK = threading.Lock()  # one batch at a time through the helpers (the app's sessions and jobs may ask at once)


class _NotStarted(Exception):
    pass


def _started(slot: int, pending: list, standardization: Standardization, prepare: Prepare,
             one_by_one: bool) -> _Helper:
    """Helper ``slot``, holding the batch: it has received and unpickled it, so the per-molecule clock starts now
    (a new helper first imports RDKit, which a busy machine may take many seconds for)."""
    helper = _HELPERS.get(slot)
    try:
        if helper is None or not helper.process.is_alive():
            helper = _HELPERS[slot] = _Helper()
    except (OSError, AssertionError) as exc:  # e.g. inside a daemonic process, which may not have children
        raise _NotStarted(f"no helper process can start here ({exc!r})") from None
    try:
        helper.conn.send((pending, standardization, prepare, one_by_one))
        if not helper.conn.poll(_START_SECONDS):
            raise _NotStarted(f"the helper process took no batch within {_START_SECONDS:g} s")
        helper.conn.recv()
    except (EOFError, OSError) as exc:
        _stop(slot)
        raise _NotStarted(f"the helper process ended before taking the batch ({exc!r})") from None
    except BaseException:
        _stop(slot)
        raise
    return helper


def _stop(slot: int) -> None:
    helper = _HELPERS.pop(slot, None)
    if helper is not None:
        helper.stop()


def prepare_all(texts: Sequence[object], standardization: Standardization = Standardization(),
                seconds: float = PARSE_SECONDS, prepare: Prepare = prepare_smiles) -> list[PreparedSmiles]:
    """:func:`~chemlm_engine.molecules.prepare_smiles` for every input, in order, each within ``seconds``
    and ``PARSE_MEMORY``; a molecule beyond either gets an error instead. ``prepare`` (a module-level
    function) replaces the per-molecule step in tests. A large batch is split into contiguous shares, one
    helper each: this thread waits on the first (so Ctrl-C and SIGTERM land here), worker threads on the rest."""
    texts = list(texts)
    shares = max(1, min(worker_processes(), len(texts) // _SHARE_MIN))
    parts = contiguous_shares(texts, shares)
    with _LOCK:
        if shares == 1:
            return _prepare_share(0, texts, standardization, seconds, prepare, threading.Event())
        cancelled = threading.Event()
        with ThreadPoolExecutor(shares - 1, thread_name_prefix="chemlm-parse") as threads:
            futures = [threads.submit(_prepare_share, slot, part, standardization, seconds, prepare, cancelled)
                       for slot, part in enumerate(parts[1:], start=1)]
            try:
                out = _prepare_share(0, parts[0], standardization, seconds, prepare, cancelled)
                for future in futures:
                    out.extend(future.result())
            except BaseException:  # Ctrl-C / SIGTERM: the other shares end too, at once
                cancelled.set()
                for slot in list(_HELPERS):
                    _stop(slot)
                raise
    return out


def _prepare_share(slot: int, texts: list, standardization: Standardization, seconds: float, prepare: Prepare,
                   cancelled: threading.Event) -> list[PreparedSmiles]:
    """One share of :func:`prepare_all` through helper ``slot`` (given up, unfinished, once ``cancelled``)."""
    out: list[PreparedSmiles] = []
    one_by_one = False
    while len(out) < len(texts) and not cancelled.is_set():
        pending = texts[len(out):] if not one_by_one else texts[len(out):len(out) + _GROUP_SIZE]
        try:
            helper = _started(slot, pending, standardization, prepare, one_by_one)
        except _NotStarted as exc:  # no helper process here: read in this process, without the limits
            if cancelled.is_set():  # it was stopped because the batch was given up: read nothing more
                break
            log.warning("%s: reading %d molecule(s) without the per-molecule limits", exc, len(pending))
            out.extend(prepare(text, standardization) for text in pending)
            continue
        if cancelled.is_set():  # given up while this helper started
            _stop(slot)
            break
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
            _stop(slot)
            if cancelled.is_set():  # the helper was stopped because the batch was given up
                break
            if one_by_one or done == len(pending) - 1:  # the stalled molecule is known: the first unreported
                text = pending[done]
                why = (f"took longer than {seconds:g} s to read (RDKit): skipped" if isinstance(exc, TimeoutError)
                       else "RDKit crashed or ran out of memory reading it: skipped")
                out.append(PreparedSmiles("" if text is None else str(text), None, why))
                one_by_one = False
            else:  # somewhere among the unreported ones: redo them one at a time
                one_by_one = True
        except BaseException:  # Ctrl-C / SIGTERM while waiting: the helper may be mid-batch
            _stop(slot)
            raise
    return out
