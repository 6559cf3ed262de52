"""What a method's result says in words: its pick against its control at each size of a sweep, from one run on
one seed (a sweep's points share the run's seed), so never a verdict a second seed could overturn."""
from __future__ import annotations

import pandas as pd

__all__ = ["against_control", "pair_reading"]

ONE_SEED = ("One run on one seed is no verdict: the seed alone moves test metrics; repeat on ≥ 3 seeds and compare "
            "them on the Compare page.")


def _label(metric: str) -> str:
    return metric.replace("_mse", " MSE").replace("_", " ")  # test_mse -> "test MSE"


def against_control(sweep: pd.DataFrame, size: str, arm_column: str, arm: str, control: str,
                    metric: str = "test_mse") -> str | None:
    """How often ``arm`` beat ``control`` on ``metric`` (lower is better) across the ``size`` points of ``sweep``
    (one row per point and arm), with each point's two values; None when no size has both."""
    wide = sweep.pivot_table(index=size, columns=arm_column, values=metric, aggfunc="last")
    if arm not in wide or control not in wide:
        return None
    both = wide[[arm, control]].dropna()
    if both.empty:
        return None
    wins = int((both[arm] < both[control]).sum())
    points = "; ".join(f"{size} = {n:g}: {a:.4g} vs {c:.4g}" for n, (a, c) in both.iterrows())
    where = "at every size" if wins == len(both) else "at no size" if wins == 0 else f"at {wins} of {len(both)} sizes"
    return f"{arm} had a lower {_label(metric)} than {control} {where} ({points}). {ONE_SEED}"


def pair_reading(arm: str, arm_value: float, control: str, control_value: float, metric: str = "test_mse") -> str:
    """One run against its control (a curriculum and its baseline) on ``metric`` (lower is better)."""
    return (f"{arm} had {'a lower' if arm_value < control_value else 'no lower'} {_label(metric)} than {control} "
            f"({arm_value:.4g} vs {control_value:.4g}). {ONE_SEED}")
