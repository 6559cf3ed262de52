"""A hub id without a network fails at once with what to do (huggingface_hub alone retried for a minute)."""
import socket

import pytest

import chemlm_engine.hub as hub
from chemlm_engine.errors import ModelLoadError
from chemlm_engine.model import load_backbone


@pytest.fixture()
def probes(monkeypatch):
    """Every connection attempt to the hub, refused as on a machine without a network."""
    asked = []

    def refused(address, timeout=None):
        asked.append(address)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(hub.socket, "create_connection", refused)
    monkeypatch.setattr(hub, "_SEEN", {})
    for name in hub._PROXIES:
        monkeypatch.delenv(name, raising=False)
    return asked


def test_an_unreachable_hub_is_asked_once_a_minute_and_never_for_a_folder_or_behind_a_proxy(probes, tmp_path,
                                                                                            monkeypatch):
    assert hub.hub_unreachable(str(tmp_path)) is False and probes == []  # a local folder needs no hub
    assert hub.hub_unreachable("org/model") is True and hub.hub_unreachable("org/other") is True
    assert len(probes) == 1 and probes[0][1] == 443
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub.hub_unreachable("org/model") is False  # behind a proxy a direct connection proves nothing


def test_a_hub_backbone_without_a_network_is_one_clear_error_at_once(probes):
    with pytest.raises(ModelLoadError, match="cannot be reached from this machine and the model is not in its local"):
        load_backbone("no-such-org/no-such-model")
    assert len(probes) == 1  # loaded from the cache only: no retries against the hub
