"""Which configuration the Compare page measures the others against by default."""
import pandas as pd

from chemlm_engine.compare import reference_choices, summarize


def _table(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"config": config, "method": method, "seed": seed, "split_seed": seed, "id": f"{i:03d}",
                          "test_r2": 0.5 + i / 100, "test_rmse": 1.0, "test_mae": 1.0, "test_mse": 1.0,
                          "trainable_params": 1, "duration_s": 1.0}
                         for i, (config, method, seed) in enumerate(rows)])


def test_the_reference_is_the_most_seeded_configuration_and_full_fine_tuning_among_equals():
    # the baseline scores worst here (R² rises with the row): the reference is not the best-scoring one
    one_seed_each = _table([("baseline", "baseline", 0), ("lora", "lora", 0), ("ensemble", "ensemble", 0)])
    assert reference_choices(one_seed_each) == ["baseline", "lora", "ensemble"]
    assert summarize(one_seed_each).set_index("config").loc["baseline", "verdict"] == "reference"
    # more seeds win; a configuration run twice on one seed counts once
    lora_twice = _table([("baseline", "baseline", 0), ("lora", "lora", 0), ("lora", "lora", 1),
                         ("ensemble", "ensemble", 0), ("ensemble", "ensemble", 0)])
    assert reference_choices(lora_twice) == ["lora", "baseline", "ensemble"]


def test_runs_on_other_molecules_are_never_paired_with_the_reference():
    table = _table([(c, "baseline", s) for c in ("all", "subset") for s in (0, 1, 2)])
    table["dataset"], table["split"], table["standardize"] = "lipophilicity", "random", True
    table["subset"] = [None] * 3 + [300] * 3
    subset = summarize(table, reference="all").set_index("config").loc["subset"]
    assert subset["pairs"] == 0
    assert subset["verdict"].startswith("not compared: tested on other molecules than the reference")
    table["subset"] = None  # the same molecules: paired on each seed
    assert summarize(table, reference="all").set_index("config").loc["subset", "pairs"] == 3


def test_what_sets_a_configuration_apart_from_the_reference_is_written_as_a_chart_reads_it():
    """A search's trials differ in learning rates like 0.00042319495174775315: labels keep three digits, and name
    only what differs from the reference (not every setting that varies among the trials)."""
    table = _table([("a", "baseline", 0), ("b", "baseline", 0), ("c", "baseline", 0)])
    table["learning_rate"] = [0.00042319495174775315, 1e-4, 1e-4]
    table["options"] = ['{"dropout": 0.123456789}', '{}', '{}']
    table["other"] = ["", "", "pooling=cls, dropout=0.2164465020582245"]
    differs = summarize(table, reference="b").set_index("config")["differs"]
    assert differs["a"] == "learning_rate 0.000423 · dropout=0.123"
    assert differs["b"] == "the reference"
    assert differs["c"] == "pooling=cls, dropout=0.216"
    against_a = summarize(table, reference="a").set_index("config")["differs"]
    assert against_a["b"] == "learning_rate 0.0001 · default options"


def test_two_backbone_folders_of_the_same_name_are_two_configurations(tmp_path):
    from chemlm_engine.compare import runs_table
    from chemlm_engine.spec import JobSpec, ModelSpec
    from chemlm_engine.store import RunStore

    store = RunStore(home=tmp_path)
    for folder in ("team-a/chemlm-mini", "team-b/chemlm-mini", "team-b/chemlm-mini"):
        run = store.create_run(JobSpec(model=ModelSpec(backbone=folder)).to_dict(), "baseline")
        store.finish(run, {"test_r2": 0.5}, None)
    run = store.create_run(JobSpec(model=ModelSpec(backbone="team-c/other-lm")).to_dict(), "baseline")
    store.finish(run, {"test_r2": 0.5}, None)
    table = runs_table(store.runs())
    assert table["config"].nunique() == 3  # not merged into one "chemlm-mini" configuration
    assert set(table["backbone"]) == {"team-a/chemlm-mini", "team-b/chemlm-mini", "other-lm"}  # short where unique


def test_runs_differing_only_in_batch_size_or_standardisation_are_two_configurations(tmp_path):
    from chemlm_engine.compare import runs_table
    from chemlm_engine.spec import DataSpec, JobSpec, TrainConfig
    from chemlm_engine.store import RunStore

    store = RunStore(home=tmp_path)
    for spec in (JobSpec(), JobSpec(train=TrainConfig(batch_size=16)), JobSpec(data=DataSpec(standardize=False))):
        run = store.create_run(spec.to_dict(), "baseline")
        store.finish(run, {"test_r2": 0.5}, None)
    configs = runs_table(store.runs())["config"]
    assert configs.nunique() == 3  # grouped as one, their seeds were pooled across batch sizes
    assert configs.str.contains("batch 16").sum() == 1 and configs.str.contains("not standardised").sum() == 1


def test_a_menu_reads_a_configuration_in_three_digits_and_repeated_seeds_are_counted():
    from chemlm_engine.compare import readable, repeated_seeds

    assert readable("baseline · lr 0.000187899 · dropout=0.012292057180858407") == \
        "baseline · lr 0.000188 · dropout=0.0123"
    assert repeated_seeds(_table([("a", "baseline", 0), ("a", "baseline", 0), ("a", "baseline", 1)])) == 1


def test_the_reference_is_one_the_others_can_be_compared_with_before_the_most_seeded():
    """Five runs on all molecules and one command-line baseline on 200, with more seeds: the reference is the
    baseline of the five, not the one no other configuration shares its test molecules with."""
    quick = [(m, m if m != "full" else "baseline", 0) for m in ("lora", "bitfit", "full", "mlm", "ia3")]
    table = _table([*quick, ("cli", "baseline", 0), ("cli", "baseline", 1)])
    table["dataset"], table["split"], table["standardize"] = "lipophilicity", "random", True
    table["subset"] = [None] * 5 + [200] * 2  # the five on all molecules (no subset: a missing value)
    assert reference_choices(table)[:2] == ["full", "lora"] and reference_choices(table)[-1] == "cli"
    assert (summarize(table).set_index("config")["pairs"].drop(["full", "cli"]) == 1).all()
