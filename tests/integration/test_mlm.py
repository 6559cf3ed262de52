import json
import shutil

import numpy as np
import torch
import pytest

from chemlm_engine.spec import JobSpec, PretrainOptions
from chemlm_engine.methods.pretrain import DESCRIPTORS, DescriptorScaler, PreparedCorpus, \
    compute_targets, load_checkpoint_state, prepare_corpus, pretrain
from rdkit import Chem

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, batch_size=32, warmup_steps=2,
            learning_rate=2e-3, n_eval=20, n_descriptor_stats=100, seed=0)


def test_pretraining_loss_falls_on_200_molecules(lipo, tmp_path):
    steps = []
    config = PretrainOptions(max_steps=40, checkpoint_every=100, **TINY)
    result = pretrain(lipo.smiles[:200], tmp_path / "pt", config, progress=steps.append)
    assert len(steps) == 40
    assert steps[-1]["mlm_loss"] < steps[0]["mlm_loss"] - 0.5
    assert result.eval["mlm_loss"] < steps[0]["mlm_loss"]
    assert set(f"r2_{n}" for n in DESCRIPTORS) <= set(result.eval)
    assert (tmp_path / "pt" / "model.safetensors").exists() and (tmp_path / "pt" / "tokenizer.json").exists()


def test_resumed_run_continues_from_its_checkpoint(lipo, tmp_path):
    smiles = lipo.smiles[:200]
    first = PretrainOptions(max_steps=10, checkpoint_every=5, **TINY)
    pretrain(smiles, tmp_path / "a", first)
    state = load_checkpoint_state(tmp_path / "a" / "checkpoint")
    assert state["step"] == 10 and state["cursor"] > 10 * 32

    # An interrupted 20-step run resumes at step 10 with the saved optimizer and data position.
    longer = PretrainOptions(max_steps=20, checkpoint_every=5, **TINY)
    seen = []
    pretrain(smiles, tmp_path / "a", longer, progress=lambda p: seen.append(p["step"]))
    assert seen[0] == 11 and seen[-1] == 20
    resumed = load_checkpoint_state(tmp_path / "a" / "checkpoint")
    assert resumed["step"] == 20 and resumed["cursor"] > state["cursor"]
    opt_step = next(iter(resumed["optimizer"]["state"].values()))["step"]
    assert int(opt_step) == 20  # AdamW moments carried over, not restarted


def test_a_spent_time_budget_saves_the_model_and_a_rerun_resumes_towards_max_steps(lipo, tmp_path, monkeypatch):
    import chemlm_engine.methods.pretrain.trainer as trainer

    clock = iter(range(0, 10_000, 10))  # every look at the clock: 10 s later
    monkeypatch.setattr(trainer.time, "time", lambda: float(next(clock)))
    budgeted = PretrainOptions(max_steps=50, checkpoint_every=100, time_budget_s=35, **TINY)
    result = pretrain(lipo.smiles[:200], tmp_path / "b", budgeted)
    assert 0 < result.steps < 50  # stopped by the budget, not by max_steps
    assert (tmp_path / "b" / "model.safetensors").exists()
    assert load_checkpoint_state(tmp_path / "b" / "checkpoint")["step"] == result.steps
    seen = []
    pretrain(lipo.smiles[:200], tmp_path / "b", PretrainOptions(max_steps=50, checkpoint_every=100, **TINY),
             progress=lambda p: seen.append(p["step"]))
    assert seen[0] == result.steps + 1 and seen[-1] == 50


def test_excluded_molecules_are_never_trained_on(lipo, tmp_path):
    smiles = lipo.smiles[:100]
    config = PretrainOptions(max_steps=3, checkpoint_every=100, **TINY)
    result = pretrain(smiles, tmp_path / "x", config, exclude=set(smiles[:50]))
    assert result.excluded > 0


def test_descriptor_targets_use_training_statistics_only(lipo, tmp_path):
    smiles = lipo.smiles[:300]
    config = PretrainOptions(max_steps=2, checkpoint_every=100, **{**TINY, "n_eval": 30})
    pretrain(smiles, tmp_path / "d", config)
    saved = json.loads((tmp_path / "d" / "descriptor_scaler.json").read_text())
    # Recompute: molecules are consumed in the seeded order; the first n_eval are held out.
    order = np.random.default_rng(0).permutation(len(smiles))
    train_ids = order[30:30 + 100]  # n_descriptor_stats=100
    train_desc = np.stack([compute_targets(Chem.MolFromSmiles(smiles[i])) for i in train_ids])
    all_desc = np.stack([compute_targets(Chem.MolFromSmiles(smiles[i])) for i in order])
    np.testing.assert_allclose(saved["mean"], train_desc.mean(0), rtol=1e-4)
    assert not np.allclose(saved["mean"], all_desc.mean(0), rtol=1e-4)
    scaler = DescriptorScaler.fit(train_desc)
    assert np.allclose(scaler.transform(train_desc).mean(0), 0, atol=1e-4)


def test_prepared_corpus_drops_invalid_excluded_and_duplicates(lipo, tmp_path):
    smiles = lipo.smiles[:60]
    raw = smiles + ["not a smiles", smiles[3], Chem.MolToSmiles(Chem.MolFromSmiles(smiles[4]), canonical=False,
                                                             doRandom=True)]
    corpus = prepare_corpus(raw, exclude={smiles[0]}, workers=2, chunk_size=16)
    assert corpus.invalid == 1 and corpus.excluded == 1
    assert corpus.smiles == smiles[1:]  # both spellings of molecule 4 and the repeat of 3 collapse
    expected = np.stack([compute_targets(Chem.MolFromSmiles(s)) for s in smiles[1:]])
    np.testing.assert_allclose(corpus.descriptors, expected, rtol=1e-6)
    assert prepare_corpus(raw, exclude={smiles[0]}, workers=1).smiles == corpus.smiles

    corpus.save(tmp_path / "corpus.parquet")
    loaded = PreparedCorpus.load(tmp_path / "corpus.parquet")
    assert loaded.smiles == corpus.smiles and (loaded.invalid, loaded.excluded) == (1, 1)
    np.testing.assert_array_equal(loaded.descriptors, corpus.descriptors)


def test_pretokenised_batches_equal_tokenised_ones(lipo):
    import torch
    from chemlm_engine.methods.pretrain.batches import Batcher
    from chemlm_engine.tokenizer import build_smiles_tokenizer

    smiles = lipo.smiles[:50]
    tokenizer = build_smiles_tokenizer(smiles)
    config = PretrainOptions(**TINY)
    ids = np.array([7, 3, 40, 12])
    torch.manual_seed(1)
    direct = Batcher(tokenizer, config)([smiles[i] for i in ids])
    torch.manual_seed(1)
    cached = Batcher(tokenizer, config, corpus=smiles)([smiles[i] for i in ids], ids)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(direct[key], cached[key])
    masked = direct["labels"] != -100
    assert masked.any() and not masked[direct["attention_mask"] == 0].any()  # padding is never a target


def test_a_corpus_with_nothing_left_after_the_task_molecules_is_a_clear_error(lipo):
    from chemlm_engine.errors import DataError
    from chemlm_engine.methods.pretrain.corpus import MoleculeStream

    task = set(lipo.smiles[:40])  # e.g. a corpus cut from the fine-tuning data itself
    with pytest.raises(DataError, match="no molecule to pretrain on"):
        MoleculeStream(prepare_corpus(lipo.smiles[:40], exclude=task, workers=1), seed=0)
    raw = MoleculeStream(list(lipo.smiles[:40]) + ["not a smiles"], seed=0, exclude=task)
    with pytest.raises(DataError, match="no molecule to pretrain on"):  # streamed: no endless search
        raw.take(8)


@pytest.mark.parametrize("prepared", [True, False])
def test_the_held_out_molecules_are_never_drawn_when_a_small_corpus_wraps_around(lipo, prepared):
    """The model card says its evaluation molecules were never trained on: true however often the corpus repeats."""
    from chemlm_engine.methods.pretrain.corpus import MoleculeStream

    corpus = prepare_corpus(lipo.smiles[:30], workers=1) if prepared else list(lipo.smiles[:30])
    stream = MoleculeStream(corpus, seed=0)
    held = set(stream.hold_out(3)[0])
    drawn = [s for _ in range(10) for s in stream.take(16)[0]]  # five and a half passes over the other 27
    assert len(held) == 3 and not held & set(drawn) and len(set(drawn)) == 27


def test_pretraining_on_a_prepared_corpus_learns(lipo, tmp_path):
    corpus = prepare_corpus(lipo.smiles[:200], workers=1)
    steps = []
    result = pretrain(corpus, tmp_path / "p", PretrainOptions(max_steps=40, checkpoint_every=100, **TINY),
                      progress=steps.append)
    assert steps[-1]["mlm_loss"] < steps[0]["mlm_loss"] - 0.5
    assert result.molecules_seen == 40 * TINY["batch_size"]  # training draws: the held-out ones are not among them
    assert (tmp_path / "p" / "model.safetensors").exists()


def test_pretraining_is_a_recorded_run_that_leaves_out_the_task_molecules(lipo, tmp_path):
    from typer.testing import CliRunner

    from chemlm_engine.cli import app
    from chemlm_engine.store.runs import RunStore, Tables

    corpus = [f"{'C' * i}O{'C' * j}" for i in range(1, 15) for j in range(i, 15)] + [lipo.smiles[0]]  # distinct
    (tmp_path / "corpus.csv").write_text("SMILES\n" + "\n".join(corpus) + "\n")
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = CliRunner().invoke(app, [
        "pretrain", "--output", str(tmp_path / "p"), "--corpus", str(tmp_path / "corpus.csv"), "--max-steps", "4",
        "--batch-size", "16", "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2",
        "--intermediate-size", "64", "--warmup-steps", "1", "--checkpoint-every", "2", "--workers", "1", "--db", db])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["status"] == "finished" and line["steps"] == 4 and line["excluded"] == 1
    store = RunStore(db)
    run = store.get_run(line["run_id"])
    assert run.method == "pretrain" and run.info["corpus_molecules"] == len(corpus) - 1
    assert store.table(run.id, Tables.PRETRAIN_LOSS)["step"].tolist() == [2, 4]
    assert (tmp_path / "p" / "config.json").exists() and (tmp_path / "p" / "tokenizer.json").exists()
    # its model card: the corpus against the left-out molecules, the held-out metrics, the spec that trains it again
    card = (tmp_path / "p" / "MODEL_CARD.md").read_text()
    assert "layers 1, hidden 32" in card and f"{len(corpus) - 1:,} molecules" in card
    assert "left out as Lipophilicity molecules: 1 |" in card
    corpus_share, lipo_share = next(line for line in card.splitlines() if line.startswith("| an acidic group"))\
        .strip("|").split("|")[1:]
    assert corpus_share.strip() == "0.0 %" and lipo_share.strip() != "0.0 %"  # no acid in the corpus; some in Lipo
    assert f"| 4 | {run.metrics['eval_mlm_loss']:.3f} |" in card  # the final held-out masked-token loss
    spec = JobSpec.from_json((tmp_path / "p" / "pretrain_spec.json").read_text())
    assert spec == JobSpec.from_dict(run.spec)


def test_a_kill_while_replacing_a_checkpoint_never_loses_it(lipo, tmp_path, monkeypatch):
    import chemlm_engine.methods.pretrain.trainer as trainer

    smiles, out = lipo.smiles[:200], tmp_path / "k"
    pretrain(smiles, out, PretrainOptions(max_steps=5, checkpoint_every=5, **TINY))
    assert (out / "checkpoint").is_symlink() and load_checkpoint_state(out / "checkpoint")["step"] == 5

    def killed(*_):  # the process dies after writing checkpoint-10, before `checkpoint` points at it
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain(smiles, out, PretrainOptions(max_steps=10, checkpoint_every=5, **TINY))
    monkeypatch.undo()
    assert load_checkpoint_state(out / "checkpoint")["step"] == 5  # the old one, whole
    (out / "checkpoint-10" / "pretrain_config.json").unlink()  # as if killed while writing it: never read
    (out / "checkpoint").unlink()  # and with the link gone, the newest whole checkpoint is found
    seen = []
    pretrain(smiles, out, PretrainOptions(max_steps=10, checkpoint_every=5, **TINY),
             progress=lambda p: seen.append(p["step"]))
    assert seen[0] == 6 and load_checkpoint_state(out / "checkpoint")["step"] == 10
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-10"]  # older ones removed


def test_rdkit_targets_hold_every_head_descriptor_and_the_charge_state():
    from chemlm_engine.descriptors import DESCRIPTOR_NAMES, LARGE_MOLECULE
    from chemlm_engine.methods.pretrain import target_names

    names = target_names("rdkit")
    assert names[:len(DESCRIPTOR_NAMES)] == DESCRIPTOR_NAMES and "AvgIpc" in names and "Ipc" not in names
    acetate = dict(zip(names, compute_targets(Chem.MolFromSmiles("CC(=O)[O-]"), "rdkit")))
    amine = dict(zip(names, compute_targets(Chem.MolFromSmiles("CC[NH3+]"), "rdkit")))
    assert (acetate["acid_groups"], acetate["base_groups"], acetate["formal_charge"]) == (1, 0, -1)
    assert (amine["acid_groups"], amine["base_groups"], amine["formal_charge"], amine["charged_atoms"]) == (0, 1, 1, 1)
    huge = dict(zip(names, compute_targets(Chem.MolFromSmiles("C" * (LARGE_MOLECULE + 5)), "rdkit")))
    assert np.isnan(huge["AvgIpc"]) and huge["MolWt"] > 1000  # size-limited ones missing, the rest computed
    with pytest.raises(ValueError, match="unknown descriptor targets"):
        target_names("mordred")


def test_missing_and_dropped_targets_are_left_out_of_the_loss():
    import torch
    from chemlm_engine.methods.pretrain.trainer import _losses

    class Fixed(torch.nn.Module):  # a masked LM that returns a known loss and last hidden state
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask, labels, output_hidden_states):
            hidden = torch.ones(*input_ids.shape, 2)
            return type("Out", (), {"loss": self.w.sum(), "hidden_states": [hidden]})()

    class Head(torch.nn.Module):  # predicts 0 for every target
        def forward(self, hidden, mask):
            return torch.zeros(hidden.shape[0], 3)

    batch = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long),
             "labels": torch.ones(2, 4, dtype=torch.long)}
    targets = torch.tensor([[1.0, float("nan"), 3.0], [float("nan"), 2.0, float("nan")]])
    _, loss, _ = _losses(Fixed(), Head(), batch, targets)
    assert loss.item() == pytest.approx((1 + 9 + 4) / 3)  # the three present targets only
    torch.manual_seed(0)
    dropped = [_losses(Fixed(), Head(), batch, targets, dropout=0.5)[1].item() for _ in range(30)]
    assert len(set(dropped)) > 1 and all(np.isfinite(dropped))  # a random subset each step, never NaN


def test_random_spellings_are_the_same_molecule_and_reach_late_positions(lipo):
    from chemlm_engine.methods.pretrain.batches import random_spellings
    from chemlm_engine.tokenizer import smiles_tokens

    smiles = lipo.smiles[:200]
    spelled = random_spellings(smiles, np.random.default_rng(0))
    assert spelled == random_spellings(smiles, np.random.default_rng(0))  # seeded: a resumed run draws the same
    assert sum(a != b for a, b in zip(spelled, smiles)) > 150
    assert [Chem.CanonSmiles(s) for s in spelled] == [Chem.CanonSmiles(s) for s in smiles]
    assert max(len(smiles_tokens(s)) for s in spelled) > 54  # positions MOSES never reached


def test_a_spelling_table_draws_among_a_few_seeded_spellings_of_the_same_molecules(lipo, tiny_backbone):
    from transformers import AutoTokenizer

    from chemlm_engine.methods.pretrain.batches import Batcher, spelling_table

    smiles = lipo.smiles[:60]
    table = spelling_table(smiles, 3, seed=0, workers=1)
    assert table == spelling_table(smiles, 3, seed=0, workers=1)
    assert table == spelling_table(smiles, 3, seed=0, workers=2, chunk=20)  # the same in any number of processes
    assert all(len(row) == 3 and {Chem.CanonSmiles(s) for s in row} == {Chem.CanonSmiles(m)}
               for row, m in zip(table, smiles))
    assert sum(len(set(row)) > 1 for row in table) > 40
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    config = PretrainOptions(randomize_smiles=True, spellings_per_molecule=3, workers=1, **TINY)
    batcher = Batcher(tokenizer, config, smiles)
    ids = np.arange(20)
    drawn = {}
    for step in range(1, 30):
        batch = batcher([smiles[i] for i in ids], ids, step)
        # masked tokens are restored from the labels to read each row's spelling back
        tokens = torch.where(batch["labels"] >= 0, batch["labels"], batch["input_ids"])
        for i, row in zip(ids, tokens.tolist()):
            text = tokenizer.decode([t for t in row if t != tokenizer.pad_token_id], skip_special_tokens=True)
            drawn.setdefault(int(i), set()).add(text.replace(" ", ""))
    assert all(spelt <= set(table[i]) for i, spelt in drawn.items())  # only the table's spellings
    assert sum(len(spelt) > 1 for spelt in drawn.values()) > 10  # drawn among them, step by step


def test_continued_pretraining_on_rdkit_targets_with_dropout_and_random_spellings(lipo, tmp_path):
    smiles = lipo.smiles[:120]
    pretrain(smiles, tmp_path / "base", PretrainOptions(max_steps=2, checkpoint_every=100, **TINY))
    config = PretrainOptions(max_steps=6, checkpoint_every=3, descriptor_targets="rdkit", target_dropout=0.3,
                             randomize_smiles=True, **TINY)
    corpus = prepare_corpus(lipo.smiles[120:240], workers=1, targets="rdkit")
    steps = []
    result = pretrain(corpus, tmp_path / "more", config, init_from=tmp_path / "base", progress=steps.append)
    assert [p["step"] for p in steps] == list(range(1, 7)) and np.isfinite(steps[-1]["descriptor_loss"])
    assert {"descriptor_r2_mean", "r2_MolLogP", "r2_acid_groups"} <= set(result.eval)
    assert "r2_BertzCT" not in result.eval  # a long target set logs its mean and the reported few
    saved = json.loads((tmp_path / "more" / "descriptor_scaler.json").read_text())
    assert saved["names"][-4:] == ["acid_groups", "base_groups", "formal_charge", "charged_atoms"]
    base_vocab = json.loads((tmp_path / "base" / "tokenizer.json").read_text())["model"]["vocab"]
    assert json.loads((tmp_path / "more" / "tokenizer.json").read_text())["model"]["vocab"] == base_vocab
    with pytest.raises(ValueError, match="'rdkit' targets"):
        pretrain(corpus, tmp_path / "other", PretrainOptions(max_steps=1, **TINY))


def test_length_sorted_micro_batches_give_the_whole_batch_gradient(lipo, monkeypatch):
    import contextlib

    import torch
    from chemlm_engine.methods.pretrain import trainer
    from chemlm_engine.methods.pretrain.batches import Batcher, micro_batches
    from chemlm_engine.methods.pretrain.trainer import DescriptorHead, _backward, _new_model
    from chemlm_engine.tokenizer import build_smiles_tokenizer

    monkeypatch.setattr(trainer, "autocast", lambda *a, **k: contextlib.nullcontext())  # fp32: sums comparable
    smiles = lipo.smiles[:24]
    tokenizer = build_smiles_tokenizer(smiles)
    whole, parted = PretrainOptions(**TINY), PretrainOptions(**{**TINY, "micro_batch_size": 5})
    model = _new_model(whole, tokenizer).eval()  # no dropout: both passes see the same network
    head = DescriptorHead(32, 8)
    torch.manual_seed(3)
    batch = Batcher(tokenizer, whole)(smiles)
    targets = torch.randn(24, 8)
    parts = micro_batches(batch, 5)
    assert [len(p["rows"]) for p in parts] == [5, 5, 5, 5, 4]
    assert sum(p["input_ids"].numel() for p in parts) < batch["input_ids"].numel()  # less padding
    grads = []
    for config in (whole, parted):
        model.zero_grad()
        head.zero_grad()
        losses = _backward(model, head, {k: v.clone() for k, v in batch.items()}, targets, config, step=1)
        grads.append((losses, [p.grad.clone() for p in list(model.parameters()) + list(head.parameters())
                               if p.grad is not None]))
    (mlm_a, desc_a), ga = grads[0]
    (mlm_b, desc_b), gb = grads[1]
    assert float(mlm_a) == pytest.approx(float(mlm_b), rel=1e-5) and float(desc_a) == pytest.approx(float(desc_b),
                                                                                                    rel=1e-5)
    assert len(ga) == len(gb) and all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(ga, gb))
