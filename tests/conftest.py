"""Shared fixtures: a tiny randomly initialised SMILES BERT stands in for a real backbone."""
from __future__ import annotations

import os
from pathlib import Path

# Under `make test`'s two xdist workers each gets one core's worth of threads, its child processes too (jobs,
# CLI commands, Streamlit servers, Ray workers): a job process with two OpenMP threads beside a busy worker ran
# its torch operations 10-30x slower than with one (each parallel region waits for the descheduled thread;
# the browser tests' quick presets took 46-142 s). Alone, two threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402 - after the thread setting, which torch reads when it is first imported
import torch  # noqa: E402
from transformers import BertConfig, BertForMaskedLM

from chemlm_engine.data import load_lipophilicity
from chemlm_engine.model import RegressionModel
from chemlm_engine.molecules import Standardization
from chemlm_engine.spec import ModelSpec
from chemlm_engine.store import RunStore
from chemlm_engine.tokenizer import build_smiles_tokenizer

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))

# The test pyramid: tests/unit are units (no Lipophilicity load, no training: `make test-unit`, under a minute);
# everything else is marked so that a layer can be chosen with -m. `make test` runs all of them.
_MARKS = {"integration": "slow", "app": "app"}


def pytest_collection_modifyitems(items):
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in _MARKS:
            item.add_marker(_MARKS[layer])
        if Path(str(item.fspath)).name == "test_browser.py":
            item.add_marker("browser")
        if Path(str(item.fspath)).name == "test_cluster.py" or "ray" in item.name:
            item.add_marker("ray")
        if item.get_closest_marker("ray"):  # one local Ray at a time: every Ray test on one xdist worker
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(scope="session")
def lipo():
    data, _ = load_lipophilicity()
    return data


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory, lipo) -> Path:
    """A 2-layer, hidden-32 BERT masked LM with a SMILES tokenizer, saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny-backbone")
    tokenizer = build_smiles_tokenizer(lipo.smiles)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def regressor_dir(tmp_path_factory, tiny_backbone, lipo) -> Path:
    """An untrained tiny regressor saved as a model folder (standardisation on, as training records it)."""
    model = RegressionModel.from_spec(ModelSpec(backbone=str(tiny_backbone), head_hidden=8), seed=0)
    model.set_label_scaler(lipo.labels)
    folder = tmp_path_factory.mktemp("regressor")
    model.save(folder, lipo.smiles[:50], lipo.labels[:50], Standardization())
    return folder


@pytest.fixture(autouse=True)
def _run_store_home(tmp_path, monkeypatch):
    """Every test's default run store is its own: a store opened from a --db URL alone, or by the app, keeps its
    run folders in $CHEMLM_HOME (default ./runs), which is otherwise the checkout."""
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "chemlm-home"))


@pytest.fixture()
def store(tmp_path) -> RunStore:
    return RunStore(home=tmp_path / "runs")
