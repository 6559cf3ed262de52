import numpy as np
import pytest

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.store import Tables
from chemlm_engine.jobs import run_job
from chemlm_engine.methods.curriculum import CurriculumSampler, difficulty, pacing_thresholds


@pytest.mark.parametrize("pacing", ["linear", "sqrt", "step"])
def test_threshold_schedule_is_monotone_from_easiest_to_hardest(pacing):
    thresholds = pacing_thresholds(11.0, 267.0, 10, pacing)
    assert thresholds[0] == 11.0 and thresholds[-1] == 267.0
    assert np.all(np.diff(thresholds) >= 0)


def test_linear_pacing_follows_the_formula():
    thresholds = pacing_thresholds(10.0, 50.0, 5, "linear")
    assert thresholds.tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]


def test_first_epoch_is_easy_last_epoch_is_everything(lipo):
    smiles = lipo.smiles[:500]
    d = difficulty(smiles)
    sampler = CurriculumSampler(d, epochs=8, batch_size=16)
    first, last = sampler(1), sampler(8)
    assert len(first) >= 16
    easiest_batch = np.sort(d)[15]
    assert np.all(d[first] <= max(sampler.thresholds[0], easiest_batch))
    assert sorted(last.tolist()) == list(range(500))
    middle = sampler(4)
    assert np.all(d[middle] <= sampler.thresholds[3]) and len(first) <= len(middle) <= len(last)
    lengths = [len(s) for s in smiles]
    drawn = np.concatenate(sampler.batches(1, lengths, np.random.default_rng(0)))
    assert sorted(drawn.tolist()) == sorted(first.tolist())
    again = np.concatenate(sampler.batches(1, lengths, np.random.default_rng(0)))
    assert drawn.tolist() == again.tolist()  # deterministic for a seed


def test_heavy_atom_and_token_difficulties(tiny_backbone):
    from transformers import AutoTokenizer

    assert difficulty(["CCO", "c1ccccc1"], "heavy_atoms").tolist() == [3, 6]
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    assert difficulty(["CCO", "ClCBr"], "tokens", tokenizer).tolist() == [3, 3]


def test_curriculum_run_trains_end_to_end_and_stores_metrics(tiny_backbone, store):
    spec = JobSpec(method="curriculum", data=DataSpec(subset=150),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=3, batch_size=16), options={"pacing": "linear"})
    run_id = run_job(spec, store)
    record = store.get_run(run_id)
    assert record.status == "finished" and record.metrics["test_rmse"] > 0
    plan = store.table(run_id, Tables.CURRICULUM_PLAN)
    train = store.epochs(run_id, stage="train")
    assert plan["admissible"].tolist() == train["n_train"].tolist()
    assert plan["admissible"].iloc[0] < plan["admissible"].iloc[-1] == 120


def test_a_one_epoch_curriculum_is_refused_before_a_run_exists(tiny_backbone, store):
    from chemlm_engine.errors import ConfigError

    spec = JobSpec(method="curriculum", data=DataSpec(subset=150), model=ModelSpec(backbone=str(tiny_backbone)),
                   train=TrainConfig(epochs=1))
    with pytest.raises(ConfigError, match="at least 2 epochs"):
        run_job(spec, store)  # it would admit every molecule at once: a baseline run named curriculum
    assert store.runs() == []
