"""Comparisons as queries over stored runs (never re-computation): runs are grouped by their full configuration
(everything in the spec but the seed), summarised over seeds, and compared with a reference configuration on
matching seeds with a paired t-test. Nothing is called better from a single run."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import ConfigError
from .spec import JobSpec
from .store import Kinds, RunRecord, RunStore, Tables

__all__ = ["METRICS", "SUITE", "CONFIG_COLUMNS", "STOPPED_ON_PURPOSE", "status_words", "run_summary", "run_document",
           "runs_frame", "runs_table", "summarize", "paired_delta", "suite_specs", "MIN_SEEDS", "launched_trusting",
           "reference_choices", "readable", "repeated_seeds"]

METRICS = ("test_r2", "test_rmse", "test_mae", "test_mse")
# What must be equal for two runs to be repeats of one configuration (seeds aside).
CONFIG_COLUMNS = ("method", "backbone", "dataset", "split", "subset", "epochs", "learning_rate", "batch_size",
                  "descriptors", "augment", "standardize", "options", "other")
_DATA_COLUMNS = ("dataset", "split", "subset", "standardize")  # what decides which molecules a run is tested on
MIN_SEEDS = 3  # fewer seeds than this: the spread is not estimated well enough to call a difference
# The comparison users know: (label, method, options), the uncertainty pair told apart by strategy.
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


def _label(row: dict) -> str:
    """A configuration in words: method, data, recipe, and its non-default options."""
    options = json.loads(row["options"] or "{}")
    extras = [*(["descriptors"] if row["descriptors"] else []), *(["augmented"] if row["augment"] else []),
              *(f"{k}={v}" for k, v in options.items()), *([row["other"]] if row.get("other") else [])]
    subset = f"{row['subset']:,} mol" if row["subset"] else "all"
    standardised = "" if row["standardize"] else ", not standardised"
    return (f"{row['method']} · {row['backbone']} · {row['dataset']} {row['split']} ({subset}{standardised}) · "
            f"{row['epochs']} ep · lr {row['learning_rate']:g} · batch {row['batch_size']}"
            + (f" · {', '.join(extras)}" if extras else ""))


def _setting(column: str, value: object) -> str:
    if column == "options":  # stored as JSON: shown as key=value
        return ", ".join(f"{k}={_short(v)}" for k, v in json.loads(str(value) or "{}").items()) or "default options"
    if column == "other":  # exact where stored (it tells configurations apart); three digits where read
        return readable(str(value)) or "default settings"
    return f"{column} {_short(value)}"


def readable(config: str) -> str:
    """A configuration's words with long decimals in three digits (lr 0.000187899 → 0.000188), for a menu: the
    exact words stay the configuration's identity."""
    return re.sub(r"\d*\.\d{4,}(e-?\d+)?", lambda m: _short(float(m[0])), config)


def repeated_seeds(table: pd.DataFrame) -> int:
    """How many finished runs repeat a configuration's seed (the newest of each counts; see :func:`summarize`)."""
    return len(table) - len(_one_per_seed(table))


def _short(value: object) -> str:
    """A setting as a chart label reads it: a search's learning rate 0.00042319495174775315 as 0.000423."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# A search stores the trials it stops on purpose as "interrupted" with one of these messages (tune.py); shown in
# words, since "interrupted" reads as a crash.
STOPPED_ON_PURPOSE = {"stopped early by ASHA after": "stopped by ASHA",
                      "cut by the search's time budget after": "cut by the time budget"}


def status_words(run: RunRecord) -> str:
    """The run's status as tables and pages show it: a search trial stopped on purpose says why."""
    if run.status == "interrupted":
        for prefix, words in STOPPED_ON_PURPOSE.items():
            if (run.message or "").startswith(prefix):
                return words
    return run.status


def run_summary(run: RunRecord) -> dict[str, Any]:
    """The run as one table row: id, status (in words), its configuration (:meth:`JobSpec.summary`), test metrics, size,
    time. A spec written by a version whose settings do not validate now still gives a row, saying so."""
    try:
        config = JobSpec.from_dict(run.spec).summary()
    except (ConfigError, TypeError, ValueError) as exc:
        config = {"method": run.method, "options": f"(not readable now: {exc})"}
    return {"id": run.id, "name": run.name, "status": status_words(run), **config,
            **{f"test_{k}": run.metrics.get(f"test_{k}") for k in ("mse", "rmse", "mae", "r2")},
            "trainable_params": run.info.get("trainable_params"), "duration_s": run.duration,
            "created": pd.Timestamp(run.created_at, unit="s")}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))  # NaN as null


def run_document(store: RunStore, run_id: str) -> dict[str, Any]:
    """One run as plain JSON data (``chemlm runs show``): spec, status, what it last said (why it stopped), metrics,
    per-epoch rows, its result tables (a sweep's points, a search's trials …), the molecules an active-learning run
    acquired (the list to measure next), error."""
    record = store.get_run(run_id)
    tables = {name: _records(store.table(run_id, name)) for name in (Tables.SWEEP, Tables.TRIALS, Tables.SOLVER,
                                                                      Tables.CURRICULUM_PLAN)}
    acquired = store.molecules(run_id, Kinds.ACQUIRED)
    return {"id": record.id, "status": record.status, "message": record.message, "method": record.method,
            "metrics": record.metrics, "info": record.info, "spec": record.spec, "versions": record.versions,
            "model_path": record.model_path, "epochs": _records(store.epochs(run_id)),
            "tables": {name: rows for name, rows in tables.items() if rows},
            "acquired": _records(acquired.drop(columns=["kind", "split"])) if len(acquired) else [],
            "error": record.error, "traceback": record.traceback}


def launched_trusting(runs: list[RunRecord], folder: str) -> bool:
    """Whether ``folder`` is the model of a finished run its user launched with 'Trust remote code': the one way a
    folder's own code (a hub backbone's modelling file) may run when the app or a job loads it."""
    return any(r.status == "finished" and r.model_path == folder and r.spec.get("model", {}).get("trust_remote_code")
               for r in runs)


def runs_frame(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run (:func:`run_summary`), in the order given; a file uploaded in the app named as it was uploaded
    (``data_file``; the store keeps it under its content's hash)."""
    frame = pd.DataFrame([run_summary(r) for r in runs])
    if "dataset" in frame:
        frame["dataset"] = [r.info.get("data_file") or name for r, name in zip(runs, frame["dataset"])]
    return frame


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per finished run that has test metrics: its configuration (``config``, in words), seed, metrics."""
    rows = []
    for run in runs:
        if run.status != "finished" or run.metrics.get("test_r2") is None:
            continue
        summary = run_summary(run)
        if "backbone" not in summary:  # a spec this version cannot read: not comparable
            continue
        spec = JobSpec.from_dict(run.spec)
        rows.append({**summary, "split_seed": spec.data.split_seed,
                     "backbone_path": spec.model.backbone, "dataset_path": spec.data.source})
    # a folder's name stands for the folder unless two runs' folders share it: then their paths tell them apart
    for column in ("backbone", "dataset"):
        paths: dict[str, set[str]] = {}
        for row in rows:
            paths.setdefault(row[column], set()).add(row[f"{column}_path"])
        for row in rows:
            row[column] = row[f"{column}_path"] if len(paths[row[column]]) > 1 else row[column]
    for row in rows:
        row["config"] = _label(row)
    return pd.DataFrame(rows, columns=["config", "id", *CONFIG_COLUMNS, "seed", "split_seed", *METRICS,
                                       "trainable_params", "duration_s"])


def paired_delta(table: pd.DataFrame, config: str, reference: str, metric: str = "test_r2") -> dict:
    """``metric`` of ``config`` minus ``reference`` on the seeds both have (seed and split seed equal): mean Δ,
    its 95 % confidence interval and the paired t-test's p-value (with at least 2 pairs)."""
    key = ["seed", "split_seed"]
    ours, theirs = table[table["config"] == config], table[table["config"] == reference]
    a = ours.drop_duplicates(key).set_index(key)[metric]
    b = theirs.drop_duplicates(key).set_index(key)[metric]
    # a seed is a pair only on the same molecules: not across data sets, split kinds or subsets
    data = [c for c in _DATA_COLUMNS if c in table]
    same_data = ours[data].astype(str).head(1).values.tolist() == theirs[data].astype(str).head(1).values.tolist()
    both = a.index.intersection(b.index) if same_data else a.index[:0]
    diff = (a[both] - b[both]).to_numpy(dtype=float)
    out = {"pairs": len(diff), "delta": float(diff.mean()) if len(diff) else np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "p_value": np.nan, "other_data": not same_data}
    if len(diff) >= 2:
        sem = diff.std(ddof=1) / np.sqrt(len(diff))
        half = stats.t.ppf(0.975, len(diff) - 1) * sem
        out.update(ci_low=out["delta"] - half, ci_high=out["delta"] + half,
                   p_value=float(stats.ttest_rel(a[both], b[both]).pvalue) if sem > 0 else np.nan)
    return out


def _verdict(delta: dict, is_reference: bool) -> str:
    # the answer first: a narrow table cuts the end of the cell
    if is_reference:
        return "reference"
    if delta.get("other_data"):
        return "not compared: tested on other molecules than the reference (data set, split or subset)"
    if delta["pairs"] == 0:
        return "not compared: no seed in common with the reference"
    if delta["pairs"] < MIN_SEEDS:
        return f"too few to tell: {delta['pairs']} paired seed(s) (run ≥ {MIN_SEEDS})"
    if not delta["p_value"] < 0.05:
        return "no clear difference (p ≥ 0.05)"
    return "higher than the reference (p < 0.05)" if delta["delta"] > 0 else "lower than the reference (p < 0.05)"


def _one_per_seed(table: pd.DataFrame) -> pd.DataFrame:
    # a configuration run twice on one seed (a curriculum pair's baseline beside a plain one) is one seed
    return table.sort_values("id").drop_duplicates(["config", "seed", "split_seed"], keep="last")


def reference_choices(table: pd.DataFrame) -> list[str]:
    """The configurations in the order a reference is offered: first those tested on the molecules most others were
    tested on (a reference alone on its data set, split or subset compares with nothing), then the most seeds and,
    among equals, full fine-tuning (what every method is measured against), then the order of the table."""
    table = _one_per_seed(table)
    seeds = table["config"].value_counts(sort=False)
    baseline = set(table.loc[table["method"] == "baseline", "config"])
    molecules = table.drop_duplicates("config").set_index("config")[[c for c in _DATA_COLUMNS if c in table]]
    tested_on = pd.Series([repr(row) for row in molecules.itertuples(index=False, name=None)], molecules.index)
    peers = tested_on.map(tested_on.value_counts())  # configurations tested on the same molecules, itself too
    return sorted(table["config"].unique(), key=lambda c: (-peers[c], -seeds[c], c not in baseline))


def summarize(table: pd.DataFrame, reference: str | None = None, metric: str = "test_r2") -> pd.DataFrame:
    """Per configuration: what sets it apart from the reference (``differs``), seeds, mean and sample std
    (undefined with one seed) of every metric, and the paired Δ ``metric`` to ``reference`` (default: the first of
    :func:`reference_choices`) with its CI, p and verdict."""
    if table.empty:
        return pd.DataFrame()
    table = _one_per_seed(table)
    grouped = table.groupby("config", sort=False)
    out = grouped.agg(method=("method", "first"), seeds=("id", "count"),
                      trainable_params=("trainable_params", "mean"), duration_s=("duration_s", "mean"))
    for m in METRICS:
        out[m] = grouped[m].mean()
        out[f"{m}_std"] = grouped[m].std(ddof=1)
    configs = set(out.index)
    base = reference if reference is not None and reference in configs else reference_choices(table)[0]
    varying = [c for c in CONFIG_COLUMNS if c in table and table[c].astype(str).nunique() > 1]
    settings = grouped[varying].first() if varying else None
    # what sets each configuration apart from the reference (a search's many trials would otherwise each spell out
    # every setting that varies anywhere)
    out["differs"] = ["" if settings is None else "the reference" if config == base else " · ".join(
        _setting(c, settings.loc[config, c]) for c in varying
        if str(settings.loc[config, c]) != str(settings.loc[base, c])) for config in out.index]
    # most seeds first, then the best first: R² high, the errors low
    out = out.reset_index().sort_values(["seeds", metric], ascending=[False, metric != "test_r2"],
                                        kind="stable").reset_index(drop=True)
    deltas = [paired_delta(table, c, base, metric) if c != base else
              {"pairs": 0, "delta": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
              for c in out["config"]]
    for key in ("pairs", "delta", "ci_low", "ci_high", "p_value"):
        out[f"{key}" if key == "pairs" else f"{key}_{metric}"] = [d[key] for d in deltas]
    out["verdict"] = [_verdict(d, c == base) for d, c in zip(deltas, out["config"])]
    return out


def suite_specs(base: JobSpec, seeds: list[int]) -> list[JobSpec]:
    """The full comparison for each seed: same data, split and recipe; the seed drives split and training."""
    specs = []
    for seed in seeds:
        for label, method, options in SUITE:
            specs.append(replace(base, method=method, options={**base.options, **options}, name=f"suite:{label}",
                                 data=replace(base.data, split_seed=seed), train=replace(base.train, seed=seed)))
    return specs
