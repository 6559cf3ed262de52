"""Method comparison: a query over stored runs (never re-computation), and the specs of the full suite."""
from __future__ import annotations

from dataclasses import replace
import numpy as np
import pandas as pd

from .config import JobSpec
from .store import RunRecord

__all__ = ["METRICS", "SUITE", "method_group", "runs_table", "summarize", "suite_specs", "best_rows"]

METRICS = ("test_mse", "test_rmse", "test_mae", "test_r2")
# The comparison users know: each entry is (group label, method, options).
SUITE: tuple[tuple[str, str, dict], ...] = (
    ("full fine-tuning", "baseline", {}),
    ("MLM then regression", "mlm", {}),
    ("curriculum (SMILES length)", "curriculum", {}),
    ("uncertainty sampling", "uncertainty", {"strategy": "uncertainty"}),
    ("random sampling (control)", "uncertainty", {"strategy": "random"}),
    ("LoRA", "lora", {}),
    ("BitFit", "bitfit", {}),
    ("IA3", "ia3", {}),
    ("IA3 (pooled vector)", "ia3-pooled", {}),
)


def method_group(spec: dict) -> str:
    """The comparison group of a stored spec (sweeps are their own groups)."""
    method, options = spec.get("method", "?"), spec.get("options", {})
    if options.get("sweep") or options.get("sweep_ranks"):
        return f"{method} sweep"
    for label, suite_method, suite_options in SUITE:
        if method == suite_method and all(options.get(k, "uncertainty") == v for k, v in suite_options.items()):
            return label
    return method


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per finished run (:meth:`RunRecord.summary`) with its comparison group."""
    rows = [{"group": method_group(run.spec), **run.summary()} for run in runs if run.status == "finished"]
    return pd.DataFrame(rows, columns=["group", "id", "name", "method", "status", "backbone", "dataset", "split",
                                       "seed", *METRICS, "trainable_params", "duration_s", "created"])


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per group (std is 0 with one seed)."""
    if table.empty:
        return pd.DataFrame()
    grouped = table.groupby("group", sort=False)
    out = grouped.agg(runs=("id", "count"), trainable_params=("trainable_params", "mean"),
                      duration_s=("duration_s", "mean"))
    for metric in METRICS:
        out[metric] = grouped[metric].mean()
        out[f"{metric}_std"] = grouped[metric].std(ddof=0).fillna(0.0)
    order = [label for label, _, _ in SUITE]
    out = out.reset_index()
    return out.sort_values("group", key=lambda g: g.map(lambda x: order.index(x) if x in order else len(order)),
                           kind="stable").reset_index(drop=True)


def suite_specs(base: JobSpec, seeds: list[int]) -> list[JobSpec]:
    """The full comparison for each seed: same data, split and recipe; the seed drives split and training."""
    specs = []
    for seed in seeds:
        for label, method, options in SUITE:
            specs.append(replace(base, method=method, options={**base.options, **options}, name=f"suite:{label}",
                                 data=replace(base.data, split_seed=seed), train=replace(base.train, seed=seed)))
    return specs


def best_rows(summary: pd.DataFrame) -> dict[str, str]:
    """Group with the best mean per metric (lowest error, highest R²)."""
    best = {}
    for metric in METRICS:
        values = summary[metric].to_numpy(dtype=float)
        if np.all(np.isnan(values)):
            continue
        pick = np.nanargmax(values) if metric == "test_r2" else np.nanargmin(values)
        best[metric] = summary["group"].iloc[int(pick)]
    return best
