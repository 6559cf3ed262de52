import json

import numpy as np

from chemlm_engine.methods.mlm import DESCRIPTORS, DescriptorScaler, PretrainConfig, compute_descriptors, \
    load_checkpoint_state, pretrain
from rdkit import Chem

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, batch_size=32, warmup_steps=2,
            learning_rate=2e-3, n_eval=20, n_descriptor_stats=100, seed=0)


def test_pretraining_loss_falls_on_200_molecules(lipo, tmp_path):
    steps = []
    config = PretrainConfig(max_steps=40, checkpoint_every=100, **TINY)
    result = pretrain(lipo.smiles[:200], tmp_path / "pt", config, progress=steps.append)
    assert len(steps) == 40
    assert steps[-1]["mlm_loss"] < steps[0]["mlm_loss"] - 0.5
    assert result.eval["mlm_loss"] < steps[0]["mlm_loss"]
    assert set(f"r2_{n}" for n in DESCRIPTORS) <= set(result.eval)
    assert (tmp_path / "pt" / "model.safetensors").exists() and (tmp_path / "pt" / "tokenizer.json").exists()


def test_resumed_run_continues_from_its_checkpoint(lipo, tmp_path):
    smiles = lipo.smiles[:200]
    first = PretrainConfig(max_steps=10, checkpoint_every=5, **TINY)
    pretrain(smiles, tmp_path / "a", first)
    state = load_checkpoint_state(tmp_path / "a" / "checkpoint")
    assert state["step"] == 10 and state["cursor"] > 10 * 32

    # An interrupted 20-step run resumes at step 10 with the saved optimizer and data position.
    longer = PretrainConfig(max_steps=20, checkpoint_every=5, **TINY)
    seen = []
    pretrain(smiles, tmp_path / "a", longer, progress=lambda p: seen.append(p["step"]))
    assert seen[0] == 11 and seen[-1] == 20
    resumed = load_checkpoint_state(tmp_path / "a" / "checkpoint")
    assert resumed["step"] == 20 and resumed["cursor"] > state["cursor"]
    opt_step = next(iter(resumed["optimizer"]["state"].values()))["step"]
    assert int(opt_step) == 20  # AdamW moments carried over, not restarted


def test_excluded_molecules_are_never_trained_on(lipo, tmp_path):
    smiles = lipo.smiles[:100]
    config = PretrainConfig(max_steps=3, checkpoint_every=100, **TINY)
    result = pretrain(smiles, tmp_path / "x", config, exclude=set(smiles[:50]))
    assert result.excluded > 0


def test_descriptor_targets_use_training_statistics_only(lipo, tmp_path):
    smiles = lipo.smiles[:300]
    config = PretrainConfig(max_steps=2, checkpoint_every=100, **{**TINY, "n_eval": 30})
    pretrain(smiles, tmp_path / "d", config)
    saved = json.loads((tmp_path / "d" / "descriptor_scaler.json").read_text())
    # Recompute: molecules are consumed in the seeded order; the first n_eval are held out.
    order = np.random.default_rng(0).permutation(len(smiles))
    eval_ids, train_ids = order[:30], order[30:30 + 100]  # n_descriptor_stats=100
    train_desc = np.stack([compute_descriptors(Chem.MolFromSmiles(smiles[i])) for i in train_ids])
    all_desc = np.stack([compute_descriptors(Chem.MolFromSmiles(smiles[i])) for i in order])
    np.testing.assert_allclose(saved["mean"], train_desc.mean(0), rtol=1e-4)
    assert not np.allclose(saved["mean"], all_desc.mean(0), rtol=1e-4)
    scaler = DescriptorScaler.fit(train_desc)
    assert np.allclose(scaler.transform(train_desc).mean(0), 0, atol=1e-4)
    assert len(eval_ids) == 30
