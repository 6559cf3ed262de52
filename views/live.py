"""Jobs as the pages show them: the live card (progress, ETA, curve, Cancel), status text, the runs table."""
from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from chemlm_engine.compare import runs_frame, status_words
from chemlm_engine.errors import RunNotFoundError
from chemlm_engine.spec import model_kind
from chemlm_engine.store import ACTIVE_STATUSES, RunRecord, Tables
from views.common import LIVE_REFRESH_S, manager, run_label, store

METRIC_LABELS = {"test_r2": "R²", "test_rmse": "RMSE", "test_mae": "MAE", "test_mse": "MSE", "val_mse": "val MSE",
                 "best_epoch": "best epoch", "seconds_per_epoch": "s / epoch"}


def sig3(value):
    """A number rounded to 3 significant digits (``None`` for missing)."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(f"{value:.3g}")


CANCELLING = "**cancelling**: it stops after its current batch"


def status_text(run: RunRecord) -> str:
    """One consistent status line: the status, then what the run last said when that adds something."""
    extra = run.message if run.message and run.message != run.status else ""
    return f"**{status_words(run)}**" + (f" · {extra}" if extra else "")


def eta_text(run: RunRecord) -> str:
    """Elapsed time and a linear ETA from the stored progress fraction, at the pace since the job's first progress
    report (loading a model or starting helper processes is not its pace)."""
    if run.started_at is None:
        return "waiting in the queue"
    elapsed = time.time() - run.started_at
    # a resumed job's kept share is not its work either
    since, done_then = run.info.get("eta_from") or (run.started_at, float(run.info.get("progress_from", 0.0)))
    own = run.progress - done_then
    if own <= 0.01:
        return f"{elapsed:.0f} s elapsed"
    return f"{elapsed:.0f} s elapsed · about {(time.time() - since) * (1 - run.progress) / own:.0f} s left"


def metrics_row(run: RunRecord) -> pd.DataFrame:
    """The run's metrics, 3 significant digits; those its method does not report (an influence run has no best
    epoch) are left out rather than shown as None."""
    own = {"mlm_eval_loss": "MLM eval loss",  # an MLM run's unsupervised stage: did it learn?
           "members": "members", "member_test_r2_mean": "members' mean R²",  # an ensemble: its intervals on test
           "interval_coverage": "test inside its interval", "interval_width": "interval width (logD)"}
    values = {label: sig3(run.metrics.get(key)) for key, label in {**METRIC_LABELS, **own}.items()}
    if run.info.get("trainable_pct", 100) < 100:  # BitFit, LoRA, IA3: what they train of the whole
        values["trainable parameters"] = f"{run.info['trainable_params']:,} ({run.info['trainable_pct']:.2g} %)"
    return pd.DataFrame([{label: value for label, value in values.items() if value is not None}])


@st.cache_data(max_entries=32)
def _curve(run_id: str, n_epochs: int, n_live: int) -> tuple[str, pd.DataFrame] | None:
    """The curve of the fit now running (a sweep or an ensemble trains several), wide by epoch: per-epoch train /
    validation MSE and the running training MSE inside epochs. Rebuilt only when a row arrives (keyed on counts)."""
    epochs, live = store().epochs(run_id), store().table(run_id, Tables.LIVE)
    stage = epochs["stage"].iloc[-1] if n_epochs else live["stage"].iloc[-1] if n_live else None
    if stage is None:
        return None
    parts = []
    if n_live:
        running = live[live["stage"] == stage][["epoch", "train_mse"]]
        parts.append(running.rename(columns={"train_mse": "train (running)"}))
    if n_epochs:
        parts.append(epochs[epochs["stage"] == stage][["epoch", "train_mse", "val_mse"]]
                     .rename(columns={"train_mse": "train", "val_mse": "validation"}))
    return stage, pd.concat(parts).sort_values("epoch").set_index("epoch")


def announce(run_id: str, text: str, follow: str | None = None) -> None:
    """What a click queued, said in that run's live card for as long as the run is queued or running: said where the
    click was, it would be gone at the page's next rerun, which the run's start itself causes. ``follow``: the key
    of the page's run selector (below the launch form), which then shows this run, not the one chosen before."""
    st.session_state.setdefault("announced", {})[run_id] = text
    if follow:
        st.session_state[follow] = run_id


def _cancel(run_id: str) -> None:
    """Cancel's callback: it runs before the cards are drawn again, so the card already says it is cancelling."""
    manager().cancel(run_id)
    st.session_state.setdefault("cancelled", set()).add(run_id)


def _ended_text(run_id: str) -> str:
    """How a run that left the running jobs ended: its card goes, so the page says why."""
    try:
        run = store().get_run(run_id)
    except RunNotFoundError:
        return f"run {run_id}: deleted"
    extra = run.message if run.message and run.message != run.status else ""
    if run.status in ("failed", "diverged") and run.error:  # why, in a line: the whole error is in its run detail
        extra = run.error.strip().splitlines()[0][:160]
    return f"{run_label(run)}: {status_words(run)}" + (f" · {extra}" if extra else "")


@st.fragment(run_every=LIVE_REFRESH_S)
def live_jobs(methods: tuple[str, ...] | None = None) -> None:
    """Active runs (of ``methods``, and those this session's clicks queued) with progress, ETA, curve and Cancel.
    Refreshes itself (``LIVE_REFRESH_S``), reruns the whole page once when one of them starts or ends, so the
    statuses and results below agree with it."""
    announced = st.session_state.get("announced", {})  # what this session's clicks queued shows on any page
    active = [r for r in store().runs() if r.status in ACTIVE_STATUSES
              and (methods is None or r.method in methods or r.id in announced)]
    key, now = f"active-{methods}", {r.id: r.status for r in active}
    before = st.session_state.get(key)
    st.session_state[key] = now
    for text in st.session_state.pop("ended", []):  # said after the rerun below, which would drop it if said before
        st.toast(text)
    if before is not None and (set(now) - set(before) or any(now.get(i) != s for i, s in before.items())):
        st.session_state["ended"] = [_ended_text(run_id) for run_id in before if run_id not in now]
        st.rerun(scope="app")  # one was queued, started or ended: the sidebar, runs table and results say so too
    if not active:
        return
    st.subheader("Running jobs")
    cancelled = st.session_state.setdefault("cancelled", set())  # a job stops at its next batch: say so meanwhile
    for run in active:
        with st.container(border=True):
            if run.id in announced:
                st.success(announced[run.id])
            cols = st.columns([4, 1])
            # cancelling: no time left to count down, the job stops at its next batch
            status = CANCELLING if run.id in cancelled else f"{status_text(run)} · {eta_text(run)}"
            cols[0].markdown(f"**{run_label(run)}** · {status}")
            cols[1].button("Cancel", key=f"cancel-{run.id}", on_click=_cancel, args=(run.id,))
            st.progress(run.progress, text=run.message)
            # The curve is on request: a browser redrawing a chart every few seconds takes CPU from the job when
            # both share a small machine (bench/app_speed.py: 0.86x the CLI's speed with it, 0.93x without).
            # A library prediction fits nothing: no curve to offer.
            if model_kind(run.method) != "predictions" and st.toggle("Live curve", key=f"curve-{run.id}"):
                curve = _curve(run.id, len(store().epochs(run.id)), len(store().table(run.id, Tables.LIVE)))
                if curve is not None:
                    st.caption(f"fit: {curve[0]} · MSE by epoch; \"train (running)\" is measured inside epochs")
                    # long form without gaps: only the series that have points are drawn and listed
                    points = curve[1].reset_index().melt(id_vars="epoch", var_name="series", value_name="MSE")
                    st.line_chart(points.dropna(), x="epoch", y="MSE", color="series", height=220)


@st.fragment(run_every=LIVE_REFRESH_S)
def live_status(run_id: str) -> None:
    """A queued or running run's status line, kept up to date as its live card is (a line drawn with the page stood
    still at the epoch the page was last drawn in)."""
    try:
        run = store().get_run(run_id)
        st.markdown(CANCELLING if run_id in st.session_state.get("cancelled", ()) and run.status == "running"
                    else status_text(run))  # as the live card says it
    except RunNotFoundError:
        st.markdown(f"run {run_id}: deleted")


def runs_overview(runs: list[RunRecord]) -> None:
    """Every run with what distinguishes it (method, split, subset, epochs, learning rate) and its test metrics."""
    frame = runs_frame(runs)
    if "subset" in frame:  # absent when no run's spec is readable by this version; none without a split (a library)
        frame["subset"] = ["—" if pd.isna(split) else "all" if pd.isna(n) else f"{int(n):,}"
                           for n, split in zip(frame["subset"], frame["split"])]
    for column, shown in (("split", "{}"), ("seed", "{:.0f}"), ("epochs", "{:.0f}"), ("learning_rate", "{:.0e}")):
        if column in frame:  # a library prediction has no recipe: "—", as for a missing metric
            frame[column] = frame[column].map(lambda v, shown=shown: "—" if pd.isna(v) else shown.format(v))
    for key, label in METRIC_LABELS.items():  # text: a run without the metric yet shows "—", not "None"
        if key in frame:
            frame[label] = frame[key].map(lambda v: "—" if sig3(v) is None else f"{sig3(v):g}")
    frame["duration_s"] = frame["duration_s"].map(lambda s: "—" if sig3(s) is None else f"{s:,.0f}")
    # the results before the recipe: a laptop's width shows them without scrolling sideways
    columns = ["id", "name", "method", "status", "R²", "RMSE", "MAE", "split", "seed", "subset", "epochs",
               "learning_rate", "duration_s", "dataset", "backbone", "options", "other"]
    st.dataframe(frame, hide_index=True, height=min(40 + 35 * len(frame), 320),
                 column_order=[c for c in columns if c in frame],
                 column_config={"duration_s": st.column_config.TextColumn("duration (s)"),
                                "other": st.column_config.TextColumn("other settings", help="settings that differ "
                                                                     "from their defaults, beyond those shown"),
                                "learning_rate": st.column_config.TextColumn("lr"),
                                "subset": st.column_config.TextColumn("subset", help="molecules drawn at random")})
