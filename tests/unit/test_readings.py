"""A method page's result in words: its pick against its control at each size, never a verdict from one seed."""
import pandas as pd

from chemlm_engine.readings import against_control, pair_reading


def _sweep(picked: list[float], control: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"k": [8, 16] * 2 + [72], "selection": ["top-k"] * 2 + ["random"] * 2 + ["all"],
                         "test_mse": [*picked, *control, 1.0]})


def test_a_sweep_is_read_size_by_size_against_its_control_with_the_seed_caveat():
    lost = against_control(_sweep([1.0749, 1.0705], [1.072, 1.0694]), "k", "selection", "top-k", "random")
    assert lost.startswith("top-k had a lower test MSE than random at no size (k = 8: 1.075 vs 1.072; k = 16: 1.071 "
                           "vs 1.069).") and "One run on one seed is no verdict" in lost
    split = against_control(_sweep([1.0, 1.2], [1.1, 1.1]), "k", "selection", "top-k", "random")
    assert "at 1 of 2 sizes" in split
    assert "at every size" in against_control(_sweep([1.0, 1.0], [1.1, 1.1]), "k", "selection", "top-k", "random")


def test_no_reading_without_both_arms_at_one_size():
    assert against_control(_sweep([1.0, 1.0], [1.1, 1.1]), "k", "selection", "top-k", "uncertainty") is None
    unmatched = pd.DataFrame({"k": [8, 16], "selection": ["top-k", "random"], "test_mse": [1.0, 1.1]})
    assert against_control(unmatched, "k", "selection", "top-k", "random") is None


def test_a_pair_is_read_on_its_test_mse():
    assert pair_reading("curriculum", 1.17, "its baseline", 1.08).startswith(
        "curriculum had no lower test MSE than its baseline (1.17 vs 1.08).")

