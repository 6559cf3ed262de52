import pandas as pd

from chemlm_engine.compare import SUITE, best_rows, method_group, runs_table, suite_specs, summarize
from chemlm_engine.config import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job


def _tiny_runs(store, backbone):
    for method, seed in [("baseline", 0), ("baseline", 1), ("lora", 0)]:
        run_job(JobSpec(method=method, data=DataSpec(subset=60, split_seed=seed),
                        model=ModelSpec(backbone=str(backbone), head_hidden=8),
                        train=TrainConfig(epochs=1, seed=seed)), store)


def test_summary_groups_runs_with_mean_and_std(tiny_backbone, store):
    _tiny_runs(store, tiny_backbone)
    table = runs_table(store.runs())
    summary = summarize(table).set_index("group")
    assert summary.loc["full fine-tuning", "runs"] == 2 and summary.loc["LoRA", "runs"] == 1
    full = table[table.group == "full fine-tuning"]["test_mse"]
    assert summary.loc["full fine-tuning", "test_mse"] == full.mean()
    assert abs(summary.loc["full fine-tuning", "test_mse_std"] - full.std(ddof=0)) < 1e-12
    assert summary.loc["LoRA", "trainable_params"] < summary.loc["full fine-tuning", "trainable_params"]
    assert set(best_rows(summary.reset_index())) == {"test_mse", "test_rmse", "test_mae", "test_r2"}


def test_best_rows_prefers_low_error_and_high_r2():
    summary = pd.DataFrame({"group": ["a", "b"], "test_mse": [0.5, 0.4], "test_rmse": [0.7, 0.6],
                            "test_mae": [0.5, 0.6], "test_r2": [0.6, 0.7]})
    assert best_rows(summary) == {"test_mse": "b", "test_rmse": "b", "test_mae": "a", "test_r2": "b"}


def test_suite_covers_every_method_for_every_seed():
    specs = suite_specs(JobSpec(train=TrainConfig(epochs=3)), [0, 1])
    assert len(specs) == 2 * len(SUITE)
    assert {s.train.seed for s in specs} == {0, 1} and all(s.train.epochs == 3 for s in specs)
    assert all(s.data.split_seed == s.train.seed for s in specs)
    assert {method_group(s.to_dict()) for s in specs} == {label for label, _, _ in SUITE}
