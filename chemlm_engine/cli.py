"""Command line: ``python -m chemlm_engine …``. Parses arguments and calls the library, nothing else."""
from __future__ import annotations

import json
import logging
import random
import sys
from pathlib import Path

import typer
from tqdm import tqdm

from .cli_interrupts import install as install_interrupts, interruption_said, say_interrupted
from .cli_predict import explain, one_of, predict, refuse_settings_beside
from .cli_runs import open_store, run_id_of, runs_app
from .cli_tune import tune
from .errors import ChemLMError, ConfigError
from .spec import EXECUTORS, METHODS, TrainConfig, model_kind

# markdown: the commands' docstrings mark names as ``code``, which the default markup mode prints with its backticks
app = typer.Typer(rich_markup_mode="markdown", no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ChemLM Studio engine: fine-tune chemical language models from the command line.")
app.add_typer(runs_app, name="runs")
for command in (predict, explain, tune):  # each in a module of its own
    app.command()(command)
_debug, _RECIPE = {"on": False}, TrainConfig()  # --debug; the recipe's defaults, written once (spec/config.py)


def main() -> None:
    """Entry point: a user error (bad input, bad setting, missing run) is one line on stderr and exit code 2;
    ``--debug`` shows its traceback. SIGTERM stops a run like Ctrl-C: it is recorded as interrupted, exit 130."""
    install_interrupts()
    try:
        app()
    except ChemLMError as exc:
        if _debug["on"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SystemExit as exc:  # 130: interrupted, where no step had a word to say (a model loading, a file read)
        if exc.code == 130 and not interruption_said():
            say_interrupted("nothing written")
        raise


def _run_with_progress(spec, store) -> None:
    """Run a job with a tqdm bar; print its run id, status and metrics as the last (JSON) line."""
    from .jobs import run_job

    bar = tqdm(total=1000, desc=spec.method, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
               disable=None)  # on a terminal only: a log gets the JSON line and errors, not bar redraws

    def report(fraction: float, message: str) -> None:
        bar.n = int(fraction * 1000)
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    known = {r.id for r in store.runs()}
    try:
        run_id = run_job(spec, store, progress=report)
    except BaseException as exc:
        bar.leave = False  # the error is the last word, on a line of its own
        bar.close()
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or SIGTERM (typer exits 130 without a word)
            new = [r.id for r in store.runs() if r.id not in known]  # none yet while its data was read
            say_interrupted(f"run {new[0]} is stored as interrupted (chemlm runs list)" if new else
                            "before the run was recorded (while its data was read): nothing stored")
        raise
    bar.close()
    record = store.get_run(run_id)
    typer.echo(json.dumps({"run_id": run_id, "status": record.status, **record.metrics}))


def _run(spec, store, executor: str = "thread", address: str | None = None) -> None:
    """Run a job on ``executor`` (:data:`~chemlm_engine.spec.config.EXECUTORS`, the app's words): ``thread`` here,
    ``process`` in a child process, ``ray`` as a Ray task; the same progress bar and last JSON line."""
    if executor == "thread":
        _run_with_progress(spec, store)
        return
    import time

    from .manager import JobManager

    manager = JobManager(store, executor=executor, ray_address=address)
    run_id = manager.submit(spec)
    bar = tqdm(total=1000, desc=f"{spec.method} ({executor})", bar_format="{l_bar}{bar}| {elapsed} {postfix}",
               disable=None)
    while run_id in manager.active() or store.get_run(run_id).status in ("queued", "running"):
        record = store.get_run(run_id)
        bar.n = int(record.progress * 1000)
        bar.set_postfix_str(record.message or "", refresh=True)
        time.sleep(0.5)
    bar.close()
    record = store.get_run(run_id)
    typer.echo(json.dumps({"run_id": run_id, "status": record.status, **record.metrics}))


_TRAINED = [name for name, entry in METHODS.items() if entry.model in ("regressor", "ensemble")]  # train's own


@app.command()
def train(
    ctx: typer.Context,
    backbone: str = typer.Option(None, help="Model folder or hub id (default: the embedded ChemLM-mini)."),
    method: str = typer.Option("baseline", help=f"{' | '.join(_TRAINED)} (method settings with --option KEY=VALUE, "
                               "checked against the method's options). Influence scores, a search, a pretraining and "
                               "a library prediction have their own commands: influence, tune, pretrain, predict."),
    epochs: int = typer.Option(_RECIPE.epochs),
    seed: int = typer.Option(0, help="Seed for the split, initialisation and batch order."),
    data: str = typer.Option("lipophilicity", help="'lipophilicity' (bundled) or a CSV (SMILES, SD) file."),
    smiles_column: str | None = typer.Option(None),
    label_column: str | None = typer.Option(None),
    split: str = typer.Option("random", help="random | scaffold"),
    subset: int | None = typer.Option(None, help="Use a seeded random subset of N molecules."),
    standardize: bool = typer.Option(True, help="RDKit standardisation (largest organic fragment, neutralised); "
                                     "recorded with the model, repeated at prediction."),
    tautomer: bool = typer.Option(False, help="With --standardize: also the canonical tautomer."),
    learning_rate: float = typer.Option(_RECIPE.learning_rate),
    batch_size: int = typer.Option(_RECIPE.batch_size),
    patience: int = typer.Option(_RECIPE.patience, help="Early-stopping patience in epochs (0 = off)."),
    pooling: str = typer.Option("mean", help="mean | cls: how the head reads the backbone's tokens."),
    descriptors: bool = typer.Option(False, help="Feed standardised RDKit 2D descriptors to the head too."),
    augment: bool = typer.Option(_RECIPE.augment,
                                 help="SMILES enumeration: a random spelling of every molecule each epoch."),
    layer_decay: float = typer.Option(_RECIPE.layer_decay,
                                      help="Layer-wise learning-rate decay (< 1: lower layers learn slower)."),
    ema_decay: float = typer.Option(_RECIPE.ema_decay,
                                    help="Keep an exponential moving average of the weights (per step; 0: off)."),
    tta: int = typer.Option(0, help="Test-time augmentation: predict the mean over canonical + N random spellings."),
    precision: str = typer.Option(_RECIPE.precision,
                                  help="auto (bf16 where the hardware has it natively) | fp32 | bf16"),
    trust_remote_code: bool = typer.Option(False, help="Run code shipped with a hub model (MoLFormer-XL needs it)."),
    option: list[str] = typer.Option([], "--option", help="Method option KEY=VALUE (JSON value), repeatable."),
    name: str = typer.Option(""),
    db: str | None = typer.Option(None, help="SQLAlchemy URL of the run store (default: $CHEMLM_HOME/runs.db)."),
    executor: str = typer.Option("thread", callback=one_of(*EXECUTORS),
                                 help="thread (in this process) | process (a child process) | ray (a Ray task)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    spec_file: Path | None = typer.Option(None, "--spec", help="Run this job spec (JSON, e.g. what `chemlm tune` "
                                          "wrote) instead of the settings above."),
) -> None:
    """Fine-tune a regressor; prints a JSON line with the run id and test metrics last."""
    from .spec import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig
    from .spec.options import options_from_text

    if spec_file is not None:
        refuse_settings_beside(ctx, "spec_file", "db", "executor", "ray_address")
        method = (job := JobSpec.from_file(spec_file)).method
    if method not in _TRAINED:  # listing what train runs, not the jobs of other commands
        raise ConfigError(f"{method} has its own command: chemlm {'tune' if method == 'search' else method} "
                          f"(train runs {', '.join(_TRAINED)})" if method in METHODS else
                          f"unknown method {method!r}; train runs {', '.join(_TRAINED)}")
    if spec_file is not None:
        _run(job, open_store(db), executor, ray_address)
        return
    spec = JobSpec(method=method, name=name, options=options_from_text(option),
                   data=DataSpec(source=data, smiles_column=smiles_column, label_column=label_column, split=split,
                                 split_seed=seed, subset=subset, standardize=standardize, tautomer=tautomer),
                   model=ModelSpec(backbone=backbone or DEFAULT_BACKBONE, trust_remote_code=trust_remote_code,
                                   pooling=pooling, descriptors=descriptors, tta=tta),
                   train=TrainConfig(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                                     patience=patience, seed=seed, precision=precision, augment=augment,
                                     layer_decay=layer_decay, ema_decay=ema_decay))
    _run(spec, open_store(db), executor, ray_address)


def _sizes(option: str, values: list[str]) -> list[int]:
    """A sweep's sizes, given as the option repeated or as one comma-separated list."""
    try:
        return [int(v) for text in values for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes whole numbers, repeated or listed (16,32): not {' '.join(values)}") from None


@app.command()
def influence(
    base_run: str = typer.Argument(..., help="Finished run whose data, split, recipe and seed are reused."),
    pool: Path | None = typer.Option(None, help="CSV of external molecules (default: held-out 30 % of training)."),
    k: list[str] = typer.Option(["16", "32", "64", "100"], "--k",
                                help="Top-k sizes for the sweep: repeated (--k 16 --k 32) or listed (--k 16,32)."),
    solver: str = typer.Option("lissa", help="lissa | cg | exact"),
    scope: str = typer.Option("last_layer", help="head | last_layer | last_N | all"),
    damping: float = typer.Option(0.01),
    scale: float = typer.Option(50.0),
    depth: int = typer.Option(200),
    repeats: int = typer.Option(2),
    corrupt_fraction: float = typer.Option(0.0, help="Shift this share of pool labels by ±3σ."),
    skip_suspects: bool = typer.Option(False, help="Leave suspected mislabelled molecules (self-influence above "
                                       "the validation split's 99th percentile) out of the top-k."),
    db: str | None = typer.Option(None),
    executor: str = typer.Option("thread", callback=one_of(*EXECUTORS),
                                 help="thread | process | ray (on Ray the k-sweep fans out, the pool is sharded)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    score_shards: int = typer.Option(1, help="With --executor ray: score the pool in this many shards."),
) -> None:
    """Score external molecules by influence on the validation loss, retrain with the top-k, compare."""
    from .spec import JobSpec

    store = open_store(db)
    base = store.get_run(run_id_of(store, base_run))
    if base.status != "finished" or model_kind(base.method) != "regressor" or base.spec["model"].get("descriptors"):
        raise ConfigError(f"run {base_run} is a {base.status} {base.method} run: the base of an influence job is a "
                          "finished single model without descriptors (the Influence page lists them)")
    options = {"k": _sizes("--k", k), "solver": solver, "scope": scope, "damping": damping, "scale": scale,
               "depth": depth, "repeats": repeats, "corrupt_fraction": corrupt_fraction, "skip_suspects": skip_suspects,
               "score_shards": score_shards, **({"pool": str(pool)} if pool else {})}
    spec = JobSpec.from_dict({**base.spec, "method": "influence", "options": options,
                              "name": f"influence of {base.id}"})
    _run(spec, store, executor, ray_address)


@app.command()
def export(run_id: str, destination: Path, description: str = typer.Option("", help="One line for the app."),
           db: str | None = typer.Option(None)) -> None:
    """Copy a finished run's model folder to DESTINATION with ``metrics.json`` (spec and test metrics); an adapter
    model (LoRA, IA3) takes a copy of its base backbone along when that is a folder on this machine."""
    from .export import bundle_base_backbones

    store = open_store(db)
    run_id = run_id_of(store, run_id)
    bundle_base_backbones(store.export_model(run_id, destination, description))
    typer.echo(f"exported {run_id} to {destination}")


@app.command()
def pretrain(
    output: Path = typer.Option(Path("pretrain_work/chemlm-mini"), help="Output folder (checkpoints inside)."),
    max_steps: int = typer.Option(4000, help="Optimizer steps."),
    batch_size: int = typer.Option(128),
    learning_rate: float = typer.Option(7e-4),
    hidden_size: int = typer.Option(256),
    num_layers: int = typer.Option(4),
    num_heads: int = typer.Option(4),
    intermediate_size: int = typer.Option(1024),
    descriptor_weight: float = typer.Option(1.0, help="Weight of the RDKit-descriptor regression loss (0 = off)."),
    warmup_steps: int = typer.Option(500),
    checkpoint_every: int = typer.Option(250),
    seed: int = typer.Option(0),
    corpus: Path | None = typer.Option(None, help="CSV with a SMILES column; default: MOSES from `molsets`."),
    workers: int | None = typer.Option(None, help="Processes that canonicalise and describe the corpus once "
                                       "(default: all cores); cached in OUTPUT."),
    init_from: Path | None = typer.Option(None, help="Masked-LM folder to continue from (e.g. assets/chemlm-mini)."),
    descriptor_targets: str = typer.Option("basic", help="'basic' (8 descriptors) or 'rdkit' (~210 RDKit "
                                           "descriptors + ionisable groups and charge at pH 7.4)."),
    target_dropout: float = typer.Option(0.0, help="Share of each molecule's descriptor targets left out."),
    randomize_smiles: bool = typer.Option(False, help="Train on a random spelling of each molecule."),
    spellings: int = typer.Option(0, help="With --randomize-smiles: spell each molecule this many ways once, in all "
                                  "cores, and draw among them (0: afresh per draw, ~80 ms a core per 512)."),
    micro_batch_size: int | None = typer.Option(None, help="Cut each batch into length-sorted groups of this size "
                                                "(same gradient, less padding: faster on a CPU)."),
    time_budget: float | None = typer.Option(None, help="Seconds: stop at the first step after them and save the "
                                            "model (a rerun resumes towards MAX_STEPS)."),
    name: str = typer.Option(""),
    db: str | None = typer.Option(None, help="SQLAlchemy URL of the run store (default: $CHEMLM_HOME/runs.db)."),
) -> None:
    """Pretrain a SMILES BERT (masked LM + descriptor regression) on MOSES as a recorded run (leaving out every
    Lipophilicity molecule); resumes from OUTPUT's checkpoint. Prints the run's JSON line last."""
    from .spec import JobSpec

    options = dict(output=str(output), max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
                   hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                   intermediate_size=intermediate_size, descriptor_weight=descriptor_weight,
                   warmup_steps=warmup_steps, checkpoint_every=checkpoint_every, seed=seed, workers=workers,
                   corpus=str(corpus) if corpus else None, init_from=str(init_from) if init_from else None,
                   descriptor_targets=descriptor_targets, target_dropout=target_dropout,
                   randomize_smiles=randomize_smiles, micro_batch_size=micro_batch_size, time_budget_s=time_budget,
                   spellings_per_molecule=spellings)
    _run_with_progress(JobSpec(method="pretrain", name=name or f"pretrain {output.name}", options=options),
                       open_store(db))


@app.command()
def corpus(
    output: Path = typer.Option(Path("pretrain_work/drug_corpus.csv"), help="CSV with a smiles column; a Markdown "
                                "card with the corpus statistics is written beside it (.md)."),
    size: int = typer.Option(1_000_000, help="Molecules (about: charged forms are added where they differ)."),
    seeds: Path | None = typer.Option(None, help="CSV with a SMILES column to start from; default: MOSES."),
    seed: int = typer.Option(0),
    workers: int = typer.Option(1, help="Processes building parts of SIZE / WORKERS molecules (seeds SEED+1 …)."),
) -> None:
    """Build the drug-like pretraining corpus from MOSES (needs `make pretrain-deps`): MOSES molecules, BRICS
    recombinations grown to 20–70 and 70–150 heavy atoms, dominant charge states at pH 7.4; no Lipophilicity
    molecule in any form. Pretrain on it with `chemlm pretrain --corpus OUTPUT`."""
    import pandas as pd
    from transformers import AutoTokenizer

    from .spec import DEFAULT_BACKBONE
    from .columns import SMILES_COLUMNS
    from .data import load_lipophilicity
    from .methods.pretrain import load_moses_smiles
    from .methods.pretrain.drug_corpus import CorpusRecipe, build_corpus_parallel, corpus_statistics, statistics_table
    from .molecules import Standardization
    from .tables import pick_column, read_table, write_csv
    from .outputs import check_output, written_aside

    check_output(output)
    if seeds is None:
        start, start_name = load_moses_smiles(), "MOSES"
    else:
        frame = read_table(seeds).frame
        start, start_name = frame[pick_column(frame.columns, None, SMILES_COLUMNS, "SMILES")].tolist(), seeds.name
    lipophilicity = load_lipophilicity(Standardization(enabled=False))[0].smiles
    molecules = build_corpus_parallel(start, lipophilicity, CorpusRecipe(size=size, seed=seed), workers)
    with written_aside(output) as aside:
        write_csv(pd.DataFrame({"smiles": molecules}), aside)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_BACKBONE)
    sample = random.Random(seed).sample(start, min(len(start), len(molecules), 100_000))
    table = statistics_table({"this corpus": corpus_statistics(molecules, tokenizer),
                              f"{start_name} ({len(sample):,} sampled)": corpus_statistics(sample, tokenizer),
                              "Lipophilicity": corpus_statistics(lipophilicity, tokenizer)})
    output.with_suffix(".md").write_text(f"# Pretraining corpus\n\n`chemlm corpus --size {size} --seed {seed} "
                                         f"--workers {workers}`: share of molecules per bin.\n\n{table}\n")
    typer.echo(json.dumps({"molecules": len(molecules), "csv": str(output), "card": str(output.with_suffix(".md"))}))


@app.callback()
def options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
            debug: bool = typer.Option(False, "--debug", help="Show the traceback of a user error.")) -> None:
    """ChemLM Studio engine."""
    _debug["on"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
