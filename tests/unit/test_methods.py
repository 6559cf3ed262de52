"""The method registry: typed, validated options; one list of methods read everywhere."""
import json
import re

import pytest

from chemlm_engine.spec import (METHODS, DataSpec, InfluenceOptions, JobSpec, LoraOptions, ModelSpec,
                                UncertaintyOptions, parse_options)
from chemlm_engine.errors import ConfigError


def test_every_method_runs_with_its_own_typed_options():
    import inspect

    for name, method in METHODS.items():
        run = method.load()
        assert method.label and callable(run), name
        ctx, data, opts = inspect.signature(run).parameters.values()  # run(ctx, data, opts)
        # its own options class, or one it derives from where runners are shared (PEFT; uncertainty and ISAL)
        assert opts.annotation in {c.__name__ for c in method.options.__mro__ if c is not object}, name
        assert method.model in ("regressor", "ensemble", "backbone", "scores", "predictions"), name


def test_what_a_job_costs_comes_from_its_options():
    assert parse_options("ensemble", {"members": 7}).fits() == 7
    assert parse_options("influence", {"k": [8, 16]}).fits() == 2 + 2 * 2
    assert parse_options("uncertainty", {"sweep": [25, 64, 128]}).fits() == 1 + 2 * 3
    assert parse_options("uncertainty", {"rounds": 3}).fits() == 1 + 3
    assert parse_options("isal", {"sweep": [25, 64]}).fits() == 1 + 3 * 2  # ISAL, uncertainty and random per N
    assert "inverse-HVP" in parse_options("isal").cost_note()
    assert "LiSSA" in parse_options("influence").cost_note()  # the note follows the chosen solver
    assert "conjugate gradients, at most 50" in parse_options("influence", {"solver": "cg"}).cost_note()
    assert parse_options("lora", {"sweep_ranks": [2, 4]}).fits() == 2 and parse_options("bitfit").fits() == 1
    assert parse_options("pretrain").fits() == 0 and "4,500 pretraining steps" in parse_options("pretrain").cost_note()
    assert parse_options("baseline").cost_note() is None and "inverse-HVP" in parse_options("influence").cost_note()


def test_an_unknown_option_is_an_error_naming_the_valid_ones():
    with pytest.raises(ConfigError, match="'rnak'.*valid options: rank, alpha"):
        JobSpec(method="lora", options={"rnak": 4})
    with pytest.raises(ConfigError, match="no options"):
        JobSpec(method="bitfit", options={"rank": 4})


def test_values_are_coerced_from_json_and_checked():
    opts = parse_options("influence", {"k": [16, 32.0], "damping": 1, "scope": "last_3"})
    assert opts == InfluenceOptions(k=(16, 32), damping=1.0, scope="last_3")
    assert isinstance(opts.damping, float) and opts.k == (16, 32)
    for bad in ({"k": [16.5]}, {"k": 16}, {"k": []}, {"solver": "newton"}, {"scope": "last_0"},
                {"damping": float("nan")}, {"skip_suspects": "yes"}, {"depth": True}):
        with pytest.raises(ConfigError):
            parse_options("influence", bad)
    assert UncertaintyOptions(initial_size=None).initial_size is None
    with pytest.raises(ConfigError, match="lora_dropout"):
        LoraOptions(lora_dropout=1.0)
    with pytest.raises(ConfigError, match="at least 2 members"):
        JobSpec(method="ensemble", options={"members": 1})


def test_a_spec_keeps_the_plain_json_form_and_round_trips():
    spec = JobSpec(method="uncertainty", options={"sweep": [25, 64], "strategy": "random"})
    again = JobSpec.from_json(spec.to_json())
    assert again == spec and again.options == {"sweep": [25, 64], "strategy": "random"}
    assert again.method_options.sweep == (25, 64) and again.method_options.passes == 20
    assert '"sweep": [25, 64]' in again.summary()["options"]


def test_a_spec_whose_method_has_required_options_summarises_its_settings():
    # a library prediction and a distillation name what they read: their bare defaults do not validate
    library = JobSpec(method="predict", options={"model": "m", "source": "s.csv", "chunk_rows": 1000})
    assert json.loads(library.summary()["options"]) == {"model": "m", "source": "s.csv"}  # chunk_rows: the default
    assert library.summary()["split"] is None and library.summary()["epochs"] is None  # it trains nothing
    student = JobSpec(method="distill", options={"teacher": "run-1"})
    assert json.loads(student.summary()["options"]) == {"teacher": "run-1"}
    assert JobSpec().summary()["options"] == ""


def test_unknown_method_lists_the_registry():
    with pytest.raises(ConfigError, match="choose from baseline, mlm"):
        JobSpec(method="dropout")


def test_isal_takes_its_own_strategy_and_exact_solvers_only():
    assert parse_options("isal").strategy == "isal" and parse_options("isal", {"strategy": "random"}).fits() == 2
    with pytest.raises(ConfigError, match="'strategy' must be one of uncertainty, random"):
        parse_options("uncertainty", {"strategy": "isal"})
    with pytest.raises(ConfigError, match="'solver' must be one of cg, exact"):
        parse_options("isal", {"solver": "lissa"})


def test_a_search_tunes_methods_that_leave_one_regressor_and_their_own_searchable_options():
    from chemlm_engine.spec import METHODS, searchable

    assert {"baseline", "lora", "isal"} <= set(searchable()) and not {"ensemble", "influence", "pretrain",
                                                                       "search"} & set(searchable())
    assert parse_options("search", {"method": "lora"}).fits() == 20
    with pytest.raises(ConfigError, match="option 'method' must be one of baseline"):
        parse_options("search", {"method": "ensemble"})
    assert METHODS["lora"].options.SEARCH == {"rank": (2, 4, 8, 16)} and METHODS["baseline"].options.SEARCH == {}


def test_a_team_sets_the_default_backbone_by_environment(tmp_path):
    import os
    import subprocess
    import sys

    code = "from chemlm_engine.spec import ModelSpec, EMBEDDED_BACKBONE; print(ModelSpec().backbone, EMBEDDED_BACKBONE)"
    env = {k: v for k, v in os.environ.items() if k != "CHEMLM_DEFAULT_BACKBONE"}
    unset = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    default, embedded = unset.stdout.split()
    assert default == embedded and embedded.endswith("chemlm-mini")
    ours = subprocess.run([sys.executable, "-c", code], env={**env, "CHEMLM_DEFAULT_BACKBONE": str(tmp_path)},
                          capture_output=True, text=True, check=True)
    assert ours.stdout.split() == [str(tmp_path), embedded]


@pytest.mark.parametrize("options", [[1], "x", None])
def test_a_spec_whose_options_are_not_settings_is_one_clear_error(options):
    said = f"options must be a JSON object of settings, not {json.dumps(options)}"
    with pytest.raises(ConfigError, match=re.escape(said)):
        JobSpec.from_dict({"method": "baseline", "options": options})


def test_the_exact_solver_above_its_size_says_which_solver_to_use():
    import torch

    from chemlm_engine.methods.influence.solvers import exact_solve

    with pytest.raises(ConfigError, match="above 5 tracked parameters use the cg solver"):
        exact_solve(lambda *_: None, (), torch.zeros(6), max_params=5)


def test_curriculum_runs_launched_anywhere_are_paired_with_their_baseline(store):
    from dataclasses import replace

    from chemlm_engine.methods.curriculum import find_pairs, paired_specs
    from chemlm_engine.spec import TrainConfig

    curriculum = JobSpec(method="curriculum")
    for spec in paired_specs(curriculum):  # the Curriculum page's pair
        store.create_run(spec.to_dict(), spec.method, spec.name)
    twin = replace(curriculum, method="baseline", options={})
    other_seed = replace(twin, train=TrainConfig(seed=1))
    ids = {name: store.create_run(spec.to_dict(), spec.method, name) for name, spec in (
        ("baseline", twin), ("baseline, seed 1", other_seed), ("suite curriculum", curriculum),
        ("no twin", replace(curriculum, train=TrainConfig(epochs=3))))}
    store.cancel(store.create_run(twin.to_dict(), "baseline", "cancelled"), "cancelled")  # newest, not finished
    for run in store.runs():
        if run.id not in ids.values() and run.name != "cancelled":
            store.rename(run.id, "my pair")  # a rename leaves the pair as it was launched
    for run_id in ids.values():
        store.finish(run_id, {"test_r2": 0.5}, None)
    pairs = find_pairs(store.runs())
    assert len(pairs) == 3
    assert [r.id for r in pairs[ids["suite curriculum"]]] == [ids["suite curriculum"], ids["baseline"]]
    assert [r.id for r in pairs[ids["no twin"]]] == [ids["no twin"]]
    launched = next(runs for key, runs in pairs.items() if key not in ids.values())
    assert [r.method for r in launched] == ["curriculum", "baseline"]
    named = paired_specs(replace(curriculum, name="mine.csv · my-backbone"))  # the page's name: file, backbone
    assert named[0].name == named[1].name and named[0].name.endswith(" · mine.csv · my-backbone")
    for spec in named:
        store.finish(store.create_run(spec.to_dict(), spec.method, spec.name), {"test_r2": 0.5}, None)
    assert [r.method for r in find_pairs(store.runs())[named[0].name.split(":", 1)[1]]] == ["curriculum", "baseline"]


def test_a_spec_names_its_files_absolute_and_leaves_hub_ids_run_ids_and_the_bundled_data_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("pool.csv", "library.csv"):
        (tmp_path / name).write_text("smiles\nCCO\n")
    (tmp_path / "backbone").mkdir()
    (tmp_path / "lipophilicity").mkdir()  # a folder named like the bundled data set does not replace it
    spec = JobSpec(method="influence", data=DataSpec(source="pool.csv"), model=ModelSpec(backbone="backbone"),
                   options={"pool": "pool.csv", "k": [4]}).with_absolute_paths()
    assert (spec.data.source, spec.model.backbone, spec.options) == (
        str(tmp_path / "pool.csv"), str(tmp_path / "backbone"), {"pool": str(tmp_path / "pool.csv"), "k": [4]})
    kept = JobSpec(method="distill", model=ModelSpec(backbone="ibm/MoLFormer-XL-both-10pct"),
                   options={"teacher": "20261206-101010-abcdef", "transfer": "library.csv"}).with_absolute_paths()
    assert (kept.data.source, kept.model.backbone, kept.options["teacher"]) == (
        "lipophilicity", "ibm/MoLFormer-XL-both-10pct", "20261206-101010-abcdef")
    assert kept.options["transfer"] == str(tmp_path / "library.csv")
    pretrain = JobSpec(method="pretrain", options={"output": "out", "corpus": "pool.csv"}).with_absolute_paths()
    assert pretrain.options == {"output": str(tmp_path / "out"), "corpus": str(tmp_path / "pool.csv")}  # written


def test_a_pretraining_is_summarised_by_its_own_settings_not_a_fine_tunings():
    summary = JobSpec(method="pretrain", options={"max_steps": 5, "hidden_size": 32}).summary()
    assert {k: summary[k] for k in ("backbone", "epochs", "learning_rate", "batch_size")} == dict.fromkeys(
        ("backbone", "epochs", "learning_rate", "batch_size"))
    assert summary["dataset"] == "lipophilicity" and '"max_steps": 5' in summary["options"]  # what it leaves out


def test_influence_options_keep_another_solvers_settings_at_their_defaults():
    assert InfluenceOptions(solver="cg", depth=50, repeats=1, scale=3.0).changed() == {"solver": "cg"}
    assert InfluenceOptions(depth=50, cg_iterations=9).changed() == {"depth": 50}  # LiSSA's own kept
    assert InfluenceOptions(solver="exact", cg_iterations=9, seed=3).changed() == {"solver": "exact"}
