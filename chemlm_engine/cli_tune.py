"""The CLI's ``tune`` command (registered on its app by :mod:`~chemlm_engine.cli`): a hyperparameter search on the
validation split, printing the best configuration as the command that reproduces it."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import typer

from .cli_interrupts import say_interrupted

__all__ = ["tune"]


def tune(
    method: str = typer.Option("baseline", help="The method whose recipe is searched."),
    num_samples: int = typer.Option(20, help="Trials (random search over the default space)."),
    time_budget: float | None = typer.Option(None, help="Stop starting trials after this many seconds."),
    epochs: int = typer.Option(20, help="The most epochs a trial gets (ASHA stops weak ones after a quarter)."),
    seed: int = typer.Option(0, help="Split and training seed, the same for every trial."),
    data: str = typer.Option("lipophilicity", help="'lipophilicity' (bundled) or a CSV path."),
    split: str = typer.Option("random", help="random | scaffold"),
    subset: int | None = typer.Option(None, help="A seeded random subset of N molecules."),
    backbone: str | None = typer.Option(None, help="Model folder or hub id (default: the embedded ChemLM-mini)."),
    name: str = typer.Option("search", help="The search's name: its trials are grouped by it; the same name resumes."),
    output: Path = typer.Option(Path("best-spec.json"), "--output", "-o",
                                help="Where the best spec is written (its refit on training + validation, for "
                                     "methods that offer one, beside it as NAME.refit.json)."),
    cpus_per_trial: int = typer.Option(2, help="CPUs each trial takes (trials run side by side when they fit)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    db: str | None = typer.Option(None, help="SQLAlchemy URL of the run store (default: $CHEMLM_HOME/runs.db)."),
) -> None:
    """Search learning rate, head size, dropout, batch size and descriptors (LoRA: rank) on the validation split
    with Ray Tune (random search, ASHA early stopping); every trial is a run. Writes the best spec and prints the
    command that reproduces it, and (baseline, ensemble) its refit on training + validation for the best trial's
    epochs, to be tested once; the test split is never used to choose."""
    from .errors import JobCancelledError
    from .spec import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig, parse_options
    from .store import RunStore
    from .outputs import check_output
    from .tune import run_search

    check_output(output)  # before the search, not after it
    parse_options("search", {"method": method, "num_samples": num_samples, "cpus_per_trial": cpus_per_trial,
                             "time_budget_s": time_budget})  # what the app's search job checks, before a Ray start
    # paths made absolute: the trials run in Ray workers, whose working folder is not this one
    base = JobSpec(method=method, data=DataSpec(source=data, split=split, split_seed=seed, subset=subset),
                   model=ModelSpec(backbone=backbone or DEFAULT_BACKBONE),
                   train=TrainConfig(epochs=epochs, seed=seed)).with_absolute_paths()
    # Ctrl-C cancels the search as the app's Cancel does (its trials say so, and the same name resumes it), instead
    # of Ray Tune's own handler ending it as if complete, its cut-off trials taken for ASHA's stops
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _: interrupted.append(number))
    try:
        result = run_search(base, RunStore(db), name, num_samples, time_budget, address=ray_address,
                            cpus_per_trial=cpus_per_trial, should_stop=lambda: bool(interrupted))
    except JobCancelledError:
        say_interrupted(f"search {name!r} stopped, no spec written; the same command resumes it")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    output = output.resolve()  # the summary names files a script can open from any folder
    output.write_text(result.best_spec.to_json())
    typer.echo(result.trials.to_string(index=False, float_format=lambda v: f"{v:.4g}"), err=True)
    typer.echo(f"best: run {result.best_run_id}, validation MSE {result.best_val_mse:.4f} at epoch "
               f"{result.best_epoch}; train it again with (the same up to rounding where the thread count differs "
               f"from the trial's)\n  chemlm train --spec {output}", err=True)
    refit, refit_spec = None, result.refit_spec
    if refit_spec is not None:
        refit = output.with_suffix(".refit.json")
        refit.write_text(refit_spec.to_json())
        refit_epochs = f"{result.best_epoch} epoch{'s' * (result.best_epoch != 1)}"
        typer.echo(f"or train it on training + validation for {refit_epochs} and test it once with\n"
                   f"  chemlm train --spec {refit}", err=True)
    typer.echo(json.dumps({"search": name, "best_run_id": result.best_run_id, "best_val_mse": result.best_val_mse,
                           "spec": str(output), "refit_spec": refit and str(refit), "trials": len(result.trials)}))
