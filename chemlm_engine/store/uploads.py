"""Files uploaded for background jobs, kept beside the runs under their content's hash (so a path always means one
file's bytes), and deleted once no run names them."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

__all__ = ["UPLOAD_GRACE", "save_upload", "prune_uploads"]

UPLOAD_GRACE = 3600.0  # seconds an unreferenced upload is kept: a page saves it before its run is submitted


def save_upload(folder: Path, data: bytes, suffix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest()[:16] + suffix)
    if path.exists():
        path.touch()  # uploaded again: fresh, so a prune before its run is submitted keeps it
    else:
        path.write_bytes(data)
    return path


def prune_uploads(folder: Path, specs: str) -> list[Path]:
    """Delete the uploads that ``specs`` (every run's spec, as text) does not name, unless saved within
    :data:`UPLOAD_GRACE` seconds; returns what was deleted."""
    if not folder.is_dir():
        return []
    cutoff = time.time() - UPLOAD_GRACE
    stale = [path for path in folder.iterdir()
             if path.is_file() and path.name not in specs and path.stat().st_mtime < cutoff]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
