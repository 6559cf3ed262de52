"""``chemlm runs``: list, show, rename and delete stored runs (a run named by its id or by its unique name), and
write out a run's per-molecule results."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from .errors import ConfigError, ModelLoadError, RunNotFoundError

__all__ = ["open_store", "run_id_of", "resolve_model", "runs_app"]

runs_app = typer.Typer(rich_markup_mode="markdown", help="Inspect, rename and delete stored runs.",
                       no_args_is_help=True)


def open_store(db: str | None):
    """The run store at SQLAlchemy URL ``db`` (default: ``$CHEMLM_HOME/runs.db``); imported on use (seconds)."""
    from .store import RunStore

    return RunStore(db)


def run_id_of(store, run: str) -> str:
    """The id of the run named ``run``: an id, or the name of exactly one run (as the app's run labels show it)."""
    try:
        return store.get_run(run).id
    except RunNotFoundError:
        named = [r.id for r in store.runs() if r.name == run.strip()]
        if len(named) > 1:
            raise ConfigError(f"{len(named)} runs are named {run!r} ({', '.join(named)}): give the id") from None
        if not named:
            raise
        return named[0]


@runs_app.command("list")
def runs_list(as_json: bool = typer.Option(False, "--json"), db: str | None = typer.Option(None)) -> None:
    """All runs, newest first (runs whose process died are marked interrupted first)."""
    store = open_store(db)
    store.mark_interrupted()
    from .compare import runs_frame

    frame = runs_frame(store.runs())
    if as_json:  # options as an object, not JSON text inside JSON; counts as whole numbers
        frame["options"] = [json.loads(o) if str(o).startswith("{") else {} for o in frame.get("options", [])]
        frame = frame.astype({c: "Int64" for c in ("subset", "seed", "epochs", "batch_size", "trainable_params")
                              if c in frame})
        typer.echo(frame.to_json(orient="records", date_format="iso"))
    elif frame.empty:
        typer.echo("no runs yet")
    else:
        formats = {"id": "", "name": "", "method": "", "status": "", "backbone": "", "split": "", "subset": ".0f",
                   "seed": ".0f", "test_mse": ".3f", "test_r2": ".3f", "duration_s": ".0f"}
        # reindexed: a store whose specs this version cannot read has no backbone or split columns at all; "–" for
        # what a run lacks (a library prediction has no recipe, a failed run no metrics)
        shown = frame.reindex(columns=list(formats))
        for column, spec in formats.items():
            shown[column] = shown[column].map(lambda v, spec=spec: "–" if v is None or v != v else format(v, spec))
        typer.echo(shown.to_string(index=False))


@runs_app.command("show")
def runs_show(run: str, db: str | None = typer.Option(None)) -> None:
    """One run (id or name) as one JSON document (for ``jq`` or ``json.load``): spec, status, what it last said (why
    it stopped), metrics, per-epoch rows, result tables (a sweep's points, a search's trials), acquired molecules,
    error."""
    from .compare import run_document

    store = open_store(db)
    store.mark_interrupted()
    typer.echo(json.dumps(run_document(store, run_id_of(store, run)), indent=2))


@runs_app.command("rename")
def runs_rename(run: str, name: str, db: str | None = typer.Option(None)) -> None:
    """Give a run (id or name) a new name: the app's labels and ``runs list`` show it."""
    store = open_store(db)
    run_id = run_id_of(store, run)
    store.rename(run_id, name)
    typer.echo(f"renamed {run_id} to {name.strip()!r}")


@runs_app.command("delete")
def runs_delete(run: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask first."),
                db: str | None = typer.Option(None)) -> None:
    """Delete a run (id or name) that is not active: its rows in the store and its folder (model, results)."""
    store = open_store(db)
    record = store.get_run(run_id_of(store, run))
    label = f"{record.id} ({record.method}{', ' + repr(record.name) if record.name else ''}, {record.status})"
    if not yes and not typer.confirm(f"delete run {label} and its files?"):
        raise typer.Exit(1)
    store.delete(record.id)
    typer.echo(f"deleted run {label}")


@runs_app.command("molecules")
def runs_molecules(run: str, kind: str = typer.Argument("influence", help=(
                       "influence (a pool's scores, ranks, self-influence and suspect flags), acquired, "
                       "pool_uncertainty, pool_isal, prediction (the test split), test_uncertainty")),
                   output: Path | None = typer.Option(None, "--output", "-o", help="A CSV file (default: stdout)."),
                   db: str | None = typer.Option(None)) -> None:
    """A run's (id or name) per-molecule results of one kind as CSV: what the Influence and Active learning pages
    download."""
    from .store import Kinds
    from .tables import write_csv
    from .outputs import written_aside

    kinds = [value for name, value in vars(Kinds).items() if name.isupper()]
    if kind not in kinds:
        raise ConfigError(f"no kind {kind!r} of molecules: {', '.join(kinds)}")
    store = open_store(db)
    run_id = run_id_of(store, run)
    frame = store.molecules(run_id, kind)
    if frame.empty:
        present = sorted(set(store.molecules(run_id).get("kind", [])))
        raise ConfigError(f"run {run_id} has no {kind} molecules"
                          + (f"; it has {', '.join(present)}" if present else "; it has none"))
    frame = frame.drop(columns="kind").dropna(axis="columns", how="all")  # columns other kinds fill
    if output is None:
        typer.echo(write_csv(frame), nl=False)
        return
    with written_aside(output) as aside:
        write_csv(frame, aside)
    typer.echo(f"wrote {len(frame):,} {kind} molecules of run {run_id} to {output}", err=True)


def resolve_model(model: str, db: str | None) -> Path:
    """A model folder, or the model of a stored run."""
    from .spec import ENSEMBLE_FILE, REGRESSOR_FILE, holds_model

    path = Path(model)
    if path.exists():  # a folder that is no model is said now, not after the seconds of the model's imports
        if not holds_model(path):
            raise ModelLoadError(f"{path} is not a ChemLM model folder (no {REGRESSOR_FILE} or {ENSEMBLE_FILE})")
        return path
    store = open_store(db)
    try:
        record = store.get_run(run_id_of(store, model))
    except RunNotFoundError:
        raise RunNotFoundError(f"{model!r} is neither a model folder nor a run's id or name") from None
    if not record.model_path:
        raise RunNotFoundError(f"run {model} has no saved model (status {record.status})")
    return Path(record.model_path)
