import numpy as np
import pandas as pd
from scipy import stats

from chemlm_engine.compare import SUITE, launched_trusting, paired_delta, runs_table, suite_specs, summarize
from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job


def _tiny_runs(store, backbone):
    """Two seeds of full fine-tuning at one learning rate, one run at another, one with CLS pooling, one LoRA run."""
    for method, seed, lr, pooling in [("baseline", 0, 1e-4, "mean"), ("baseline", 1, 1e-4, "mean"),
                                      ("baseline", 0, 1e-3, "mean"), ("baseline", 0, 1e-4, "cls"),
                                      ("lora", 0, 1e-4, "mean")]:
        run_job(JobSpec(method=method, data=DataSpec(subset=60, split_seed=seed),
                        model=ModelSpec(backbone=str(backbone), head_hidden=8, pooling=pooling),
                        train=TrainConfig(epochs=1, seed=seed, learning_rate=lr)), store)


def test_runs_are_grouped_by_full_configuration_never_pooled(tiny_backbone, store):
    _tiny_runs(store, tiny_backbone)
    table = runs_table(store.runs())
    summary = summarize(table).set_index("config")
    # neither lr 1e-3 nor CLS pooling is pooled with the mean-pooled lr 1e-4 runs
    assert len(summary) == 4 and sorted(summary["seeds"]) == [1, 1, 1, 2]
    two = summary[summary["seeds"] == 2].iloc[0]
    assert "lr 0.0001" in two.name and two["method"] == "baseline"
    assert two["differs"] == "the reference"  # the most seeds, full fine-tuning: what the others are set against
    assert summary[summary.index.str.contains("pooling=cls")]["differs"].tolist() == ["pooling=cls, head_hidden=8"]
    values = table[table["config"] == two.name]["test_r2"]
    assert two["test_r2"] == values.mean() and np.isclose(two["test_r2_std"], values.std(ddof=1))
    single = summary[summary["seeds"] == 1]
    assert single["test_r2_std"].isna().all()  # no spread from one run
    assert (single["verdict"] == "too few to tell: 1 paired seed(s) (run ≥ 3)").all()
    for metric, best_first in (("test_r2", "descending"), ("test_mse", "ascending")):  # R² high, errors low first
        singles = summarize(table, metric=metric).query("seeds == 1")[metric]
        assert singles.is_monotonic_decreasing if best_first == "descending" else singles.is_monotonic_increasing


def _synthetic(deltas: list[float]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.normal(0.6, 0.05, len(deltas))
    rows = [{"config": c, "id": f"{c}{s}", "seed": s, "split_seed": s, "method": "baseline", "test_r2": v,
             "test_rmse": 1 - v, "test_mae": 1 - v, "test_mse": 1 - v, "trainable_params": 1, "duration_s": 1}
            for c, values in (("A", base), ("B", base + np.asarray(deltas))) for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_paired_delta_matches_a_paired_t_test_and_calls_only_clear_differences():
    table = _synthetic([0.05, 0.06, 0.04, 0.05, 0.055])
    delta = paired_delta(table, "B", "A")
    a, b = table[table.config == "A"]["test_r2"].to_numpy(), table[table.config == "B"]["test_r2"].to_numpy()
    assert delta["pairs"] == 5 and np.isclose(delta["delta"], (b - a).mean())
    assert np.isclose(delta["p_value"], stats.ttest_rel(b, a).pvalue) and delta["ci_low"] > 0
    summary = summarize(table, reference="A").set_index("config")
    assert summary.loc["B", "verdict"] == "higher than the reference (p < 0.05)"
    assert summary.loc["A", "verdict"] == "reference"
    noisy = summarize(_synthetic([0.1, -0.1, 0.05, -0.06]), reference="A").set_index("config")
    assert noisy.loc["B", "verdict"] == "no clear difference (p ≥ 0.05)"
    assert summarize(_synthetic([0.3, 0.3]), reference="A").set_index("config").loc["B", "verdict"].startswith(
        "too few to tell: 2 paired seed(s)")


def test_a_configuration_run_twice_on_one_seed_counts_once():
    table = _synthetic([0.05, 0.06, 0.04])
    again = table[(table.config == "A") & (table.seed == 0)].assign(id="A0-again", test_r2=0.9)
    summary = summarize(pd.concat([table, again]), reference="A").set_index("config")
    assert summary.loc["A", "seeds"] == 3  # not 4: the repeat on seed 0 replaces the earlier run
    kept = table[table.config == "A"]["test_r2"].to_numpy()
    assert np.isclose(summary.loc["A", "test_r2"], (0.9 + kept[1] + kept[2]) / 3)


def test_suite_covers_every_method_for_every_seed():
    specs = suite_specs(JobSpec(train=TrainConfig(epochs=3)), [0, 1])
    assert len(specs) == 2 * len(SUITE)
    assert {s.train.seed for s in specs} == {0, 1} and all(s.train.epochs == 3 for s in specs)
    assert all(s.data.split_seed == s.train.seed for s in specs)
    assert {s.name for s in specs} == {f"suite:{label}" for label, _, _ in SUITE}


def test_only_a_finished_run_launched_trusting_lets_its_folder_run_code(store, tmp_path):
    def run(trust: bool, folder: str, finish: bool = True) -> None:
        run_id = store.create_run(JobSpec(model=ModelSpec(trust_remote_code=trust)).to_dict(), "baseline")
        if finish:
            store.finish(run_id, {"test_r2": 0.5}, folder)

    run(True, "trusted")
    run(False, "plain")
    run(True, "unfinished", finish=False)
    runs = store.runs()
    assert launched_trusting(runs, "trusted")
    assert not any(launched_trusting(runs, f) for f in ("plain", "unfinished", "never-trained"))
