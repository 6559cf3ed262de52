"""Where results are written: an output path refused before any work when it cannot be written (a folder, a missing
or read-only folder, the input itself), and files written under a temporary name, renamed only when whole."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

__all__ = ["check_output", "check_folder", "written_aside"]


def check_output(path: Path, source: Path | None = None) -> None:
    """:class:`OutputError` now, before any work, for a result path that cannot be a file or is the input itself."""
    if source is not None and path.exists() and source.exists() and path.samefile(source):  # by any path or link
        raise OutputError(f"{path} is the input file: the results would replace it; name another, e.g. "
                          f"{path.stem}-predictions{path.suffix}")
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give a file name, e.g. {path / 'predictions.csv'}")
    check_folder(path)


def check_folder(path: Path) -> None:
    """:class:`OutputError` now, before any work, where the folder ``path`` is to be written in is missing, is a file,
    or cannot be written (read-only, no permission): not after the work."""
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{path.parent} is a file, not a folder: choose another output path")
    if not path.parent.is_dir():
        raise OutputError(f"folder {path.parent} does not exist: create it or choose another output path")
    try:
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def written_aside(path: Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to, renamed to ``path`` only when writing succeeded: a failed
    write (disk full, read-only) leaves no partial file and becomes one :class:`OutputError`. The temporary name is
    the process's own, so processes writing the same path at once never rename each other's half-written file."""
    check_output(path)
    aside = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield aside
        os.replace(aside, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()
