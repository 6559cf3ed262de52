"""Whether a backbone named by a hub id can be fetched at all. Without a network, huggingface_hub retries every
file five times (about 25 s each, a minute per backbone) before it says so; a quick look at the hub first lets a
hub id load from the local cache at once, or fail at once with what to do."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["hub_unreachable", "is_cached", "OFFLINE_HINT"]

OFFLINE_HINT = ("the Hugging Face hub cannot be reached from this machine and the model is not in its local cache: "
                "download it once where there is a network (it is then cached), or give a model folder")
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_SEEN: dict[str, tuple[float, bool]] = {}  # host -> (when, reachable): asked again after a minute
_PROBE_TIMEOUT_S = 3.0


def hub_unreachable(source: str) -> bool:
    """True when ``source`` is a hub id (no such local path) and the hub's host does not answer a TCP connection
    within 3 s. Behind a proxy the hub is taken as reachable (a direct connection says nothing there)."""
    if Path(source).exists() or any(os.environ.get(name) for name in _PROXIES):
        return False
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    when, reachable = _SEEN.get(host, (0.0, True))
    if time.monotonic() - when > 60:
        try:
            socket.create_connection((host, endpoint.port or 443), timeout=_PROBE_TIMEOUT_S).close()
            reachable = True
        except OSError:
            reachable = False
        _SEEN[host] = (time.monotonic(), reachable)
    return not reachable


def is_cached(hub_id: str) -> bool:
    """Whether huggingface_hub's local cache holds this model's ``config.json`` (it was downloaded before)."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except HFValidationError:  # not a valid hub id at all
        return False
