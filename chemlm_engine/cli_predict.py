"""The CLI's prediction commands (registered on its app by :mod:`~chemlm_engine.cli`): ``predict`` and ``explain``;
and the option checks every command shares (:func:`one_of`, :func:`refuse_settings_beside`)."""
from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

import typer
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .cli_interrupts import say_interrupted
from .cli_runs import resolve_model

__all__ = ["predict", "explain", "one_of", "refuse_settings_beside", "library_bar", "wrote"]


def one_of(*choices: str):
    """A typer callback that refuses a value outside ``choices`` (naming them), like every other setting."""
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return check


def refuse_settings_beside(ctx: typer.Context, *allowed: str) -> None:
    """A spec file is run as written: a setting typed beside it would be silently ignored, so it is refused."""
    from .errors import ConfigError

    given = [p.opts[0] for p in ctx.command.params if p.name not in allowed
             and getattr(ctx.get_parameter_source(p.name), "name", None) == "COMMANDLINE"]  # typer vendors click
    if given:
        raise ConfigError(f"--spec runs the file as written, so {', '.join(given)} would be ignored: change the "
                          "setting in the file, or leave --spec out")


_IN_MEMORY_ROWS = 100_000  # more input rows than this: say that the streamed path exists


def predict(
    model: str = typer.Option(None, help="Model folder, or a run's id or name (default: the embedded lipo-regressor)."),
    smiles: list[str] = typer.Option([], "--smiles", "-s", help="SMILES to predict (repeatable)."),
    input: Path | None = typer.Option(None, "--input", "-i", help="CSV, SMILES file (.smi), SD file (.sdf) "
                                         "or Parquet with a SMILES column (any of them may be .gz / .bz2 / .xz)."),
    smiles_column: str | None = typer.Option(None),
    name_column: str | None = typer.Option(None, help="CSV column with molecule names (optional)."),
    measured_column: str | None = typer.Option(None, help="CSV column with measured values: metrics for your data "
                                               "(default: a column named like logD7.4 (exp) or measured_logd)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="CSV to write (default: stdout); a .parquet "
                                       "file (a folder with --executor ray) streams a library of any size; an .xlsx "
                                       "is an Excel workbook; for an SD input, an .sdf is its copy with the "
                                       "predictions in its records."),
    executor: str = typer.Option("thread", callback=one_of("thread", "ray"),
                                 help="thread (here) | ray (stream the library through Ray Data)."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    workers: int = typer.Option(1, help="Model-holding Ray actors (with --executor ray)."),
    trust_remote_code: bool = typer.Option(False, help="Let the model folder run code it ships (only for models "
                                           "you trust; a folder cannot switch this on by itself)."),
    db: str | None = typer.Option(None),
) -> None:
    """Predict logD for SMILES: one output row per input, with ``error`` for rows that cannot be predicted,
    ``warnings`` for what the model cannot read as written, ``standardization`` for what was cleaned and the
    nearest training molecule (``similarity``, ``in_domain``) where the model folder saved its training set."""
    from .errors import ConfigError, DataError, OutputError
    from .spec import DEFAULT_REGRESSOR
    from .filekinds import is_excel, is_parquet, is_sd_file
    from .sdfile import frame_rows, write_sd
    from .tables import count_rows, write_csv, write_xlsx
    from .outputs import check_folder, check_output, written_aside

    if not smiles and input is None:
        raise typer.BadParameter("give --smiles or --input")
    if smiles and input is not None:
        raise ConfigError("give --smiles or --input, not both (add the molecules to the file)")
    if smiles and (smiles_column or name_column or measured_column):  # the columns of a file, which there is not
        raise ConfigError("--smiles-column, --name-column and --measured-column name columns of --input")
    sd_output = output is not None and is_sd_file(output)
    if executor == "ray" and output is not None and output.suffix.lower() not in ("", ".parquet"):
        raise OutputError(f"{output}: --executor ray writes a folder of Parquet files: name it e.g. predictions/ or "
                          "predictions.parquet")
    if sd_output and (input is None or not is_sd_file(input)):
        raise OutputError(f"{output}: an SD output is a copy of the SD input (--input FILE.sdf) with the predictions "
                          "in its records; otherwise write .csv or .parquet")
    if output is not None and executor != "ray":  # Ray writes a folder of parts
        check_output(output, input)
        _check_output_kind(output, library=input is not None and is_parquet(input))
    elif output is not None:
        check_folder(output)
    if input is not None and not input.is_file():  # said now, not after the seconds the imports below take
        raise DataError(f"cannot open {input}: {'a folder' if input.is_dir() else 'no such file'}")
    library = input is not None and (executor == "ray" or is_parquet(input) or bool(output and is_parquet(output)))
    if input is not None and not library:  # a library's own refusals (no --output …) come first, after the imports
        _check_columns(input, smiles_column, measured_column)
    folder = resolve_model(model or DEFAULT_REGRESSOR, db)
    # the model's imports (torch, transformers: seconds) only once the arguments are known to be good
    from .predict.domain import TrainingReference, add_applicability_domain
    from .predict.ensemble import load_predictor
    from .predict.batch import predict_csv, predict_smiles, result_columns, user_table
    from .library import annotated_library
    from .library_results import measured_frame

    # this process predicts and ends: the imports' ~460,000 objects are frozen out of the garbage collector's full
    # passes, each of which rescanned them (0.25 s: one within every 1,000-molecule prediction, more in a library)
    gc.freeze()
    many = not library and input is not None and count_rows(input) > _IN_MEMORY_ROWS  # a CSV result: in one go
    if input is not None and (library or (many and sd_output)):
        if name_column:  # the library keeps every column of the file as it is
            typer.echo("note: a library prediction keeps every column of the file; --name-column is not used",
                       err=True)
        if output is None:
            raise OutputError("a library prediction writes Parquet: give --output predictions.parquet")
        measured = _library_measured(input, smiles_column, measured_column)  # before the hours of predicting
        results = output.with_name(output.name + ".parquet") if sd_output else output
        results, summary = _predict_library(folder, input, results, smiles_column, executor, ray_address, workers,
                                            trust_remote_code)
        if measured:
            _say_metrics(measured_frame(results, measured))
        typer.echo(summary, err=True)  # the last line, as on the in-memory path
        if sd_output:  # streamed to Parquet beside it, then copied record by record: any size
            assert output is not None
            annotated_library(results, input, output)
            typer.echo(f"wrote {output} (its records with the results as chemlm_* fields; the results as a table: "
                       f"{results.name})", err=True)
        return
    if many and input is not None:
        typer.echo(f"note: {input.name} has over {_IN_MEMORY_ROWS:,} rows: --output predictions.parquet streams it in "
                   "constant memory and resumes after an interruption", err=True)
    regressor = load_predictor(folder, trust_remote_code=trust_remote_code)
    started = time.time()
    # on a terminal only (stdout may be the CSV); it counts distinct molecules: a repeated one is predicted once
    bar = tqdm(desc="predict (distinct molecules)", unit="mol", disable=None)

    def report(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        if input is not None:
            frame = predict_csv(regressor, input, smiles_column, name_column, measured_column=measured_column,
                                progress=report, find_measured=True)
        else:
            frame = predict_smiles(regressor, smiles, progress=report)
    except KeyboardInterrupt:  # Ctrl-C: nothing is kept on this path; say so, and for a file which path keeps rows
        bar.close()
        say_interrupted("nothing written" + ("" if input is None else " (this output is written whole at the end); "
                                             "--output NAME.parquet keeps rows as they are predicted, and the same "
                                             "command then resumes after them"))
        raise typer.Exit(130) from None
    bar.close()
    frame = add_applicability_domain(frame, TrainingReference.load(folder))
    if frame.attrs.get("measured_column"):  # named, or found by its name as the Predict page finds it
        _say_metrics(frame)
    if output is None:
        typer.echo(write_csv(user_table(frame)), nl=False)
    else:
        with written_aside(output) as aside:
            if sd_output:  # the record already holds the file's own fields: only the results are added
                assert input is not None
                write_sd(input, *frame_rows(frame[result_columns(frame)]), aside)
            elif is_excel(output):
                write_xlsx(user_table(frame), aside)
            elif is_parquet(output):  # pasted SMILES (a file to .parquet streams as a library, above)
                user_table(frame).to_parquet(aside, index=False)
            else:
                write_csv(user_table(frame), aside)
        typer.echo(wrote(frame, output, time.time() - started), err=True)


def explain(
    smiles: list[str] = typer.Option(..., "--smiles", "-s", help="The molecule to explain (one)."),
    model: str = typer.Option(None, help="Model folder, or a run's id or name (default: the embedded lipo-regressor)."),
    top: int = typer.Option(10, min=1, help="Training molecules per list (pushing up, pushing down, nearest)."),
    output: Path = typer.Option(Path("explanation"), "--output", "-o", help="Writes OUTPUT.csv (training "
                                "molecules) and OUTPUT.png (OUTPUT may end in .csv or .png; any other dot is part of "
                                "the name)."),
    trust_remote_code: bool = typer.Option(False, help="Let the model folder run code it ships."),
    db: str | None = typer.Option(None),
) -> None:
    """Why this prediction: the training molecules that push it up and down (leave-one-out on the head's last
    layer) and the atoms that drive it (integrated gradients), as a CSV and an atom map."""
    from .errors import ConfigError, DataError
    from .spec import DEFAULT_REGRESSOR
    from .tables import write_csv
    from .outputs import check_output, written_aside
    from .training_set import TRAINING_SET_FILE, missing_training_set

    if len(smiles) > 1:  # typer would keep the last one only
        raise ConfigError(f"explain takes one molecule (--smiles given {len(smiles)} times); predict takes many")
    stem = output.with_suffix("") if output.suffix.lower() in (".csv", ".png") else output  # why/ibu.v1 stays whole
    csv_path, png_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".png")
    check_output(csv_path)
    folder = resolve_model(model or DEFAULT_REGRESSOR, db)
    if not (folder / TRAINING_SET_FILE).exists():
        raise missing_training_set(folder)
    from .predict.ensemble import load_predictor
    from .predict.explain import explain as explain_prediction
    from .guard import prepare_all
    from .predict.batch import molecule_warnings
    from .predict.domain import TrainingReference, add_applicability_domain
    import pandas as pd

    predictor = load_predictor(folder, trust_remote_code=trust_remote_code)
    prepared = prepare_all(smiles, predictor.standardization)[0]
    if prepared.error or prepared.smiles is None:
        raise DataError(f"--smiles {smiles[0]}: {prepared.error or 'not a molecule'}")
    warning = molecule_warnings(predictor, [prepared.smiles], [prepared.heavy_atoms])[0]
    if warning:  # the same words predict gives: the explanation is of what the model read
        typer.echo(f"warning: {warning}", err=True)
    reference = TrainingReference.load(folder)
    result = explain_prediction(predictor, folder, prepared.smiles, reference)
    # where the molecule stands, as predict says it: a training molecule's explanation is of what it learned from it
    domain = add_applicability_domain(pd.DataFrame({"canonical_smiles": [prepared.smiles], "error": [None]}),
                                      reference).iloc[0]
    with written_aside(csv_path) as table, written_aside(png_path) as picture:
        write_csv(result.top(top), table)
        picture.write_bytes(result.picture)
    typer.echo(json.dumps({"smiles": prepared.smiles, "standardization": "; ".join(prepared.changes) or None,
                           "prediction": result.prediction,
                           # None: too large to draw, so not attributed; "trees" also where the model has none
                           "baseline": None if result.atoms is None else float(result.atoms["baseline"]),
                           "trees": None if result.atoms is None or getattr(predictor, "trees", None) is None
                           else float(result.atoms["trees"]),
                           "warnings": warning, "similarity": float(domain["similarity"]),
                           "in_domain": bool(domain["in_domain"]), "in_training": bool(domain["in_training"]),
                           "csv": str(csv_path), "png": str(png_path)}))


_OUTPUT_KINDS = (".csv", ".parquet", ".xlsx", ".sdf")


def _check_output_kind(output: Path, library: bool) -> None:
    """:class:`OutputError` for an output name whose kind would not be what is written (a CSV named .json)."""
    from .errors import OutputError

    suffix = output.suffix.lower()
    if suffix not in _OUTPUT_KINDS:
        raise OutputError(f"{output}: name the output .csv, .parquet or .xlsx (.sdf for an SD input); "
                          f"{suffix or 'no suffix'} is not written")
    if library and suffix != ".parquet":
        raise OutputError(f"{output}: a Parquet input is predicted as a library and written as Parquet: name the "
                          "output .parquet")


def library_bar(**options) -> tuple[tqdm, Callable[[int, int], None]]:
    """A progress bar for a library and the callback that moves it. The rows a resumed run finds written count
    as done from the start, not towards its speed."""
    bar = tqdm(unit="mol", desc="predict", **options)  # in a log too: a library may run for hours under nohup

    def report(done: int, total: int) -> None:
        if bar.total is None:  # the first report: what an earlier run wrote; this run's clock starts now
            bar.initial = bar.n = bar.last_print_n = done
            bar.start_t = bar.last_print_t = time.time()
        bar.total = total
        bar.update(done - bar.n)

    return bar, report


def _say_metrics(frame) -> None:
    """The metrics against the measured column (``attrs["measured_column"]``), and what they left out."""
    from .predict.batch import measured_metrics, measured_notes

    metrics = measured_metrics(frame)
    notes = measured_notes(frame, metrics)
    metrics.pop("in_training", None)
    typer.echo(f"against measured ({frame.attrs['measured_column']}): " + (
        ", ".join(f"{k} {v:,}" if k == "n" else f"{k} {v:.3f}" for k, v in metrics.items()) if metrics["n"] > 1
        else f"{metrics['n']} row{'s' * (metrics['n'] != 1)} with a prediction and a measured value: no metrics"),
        err=True)
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def _check_columns(source: Path, smiles_column: str | None, measured_column: str | None) -> None:
    """The SMILES column found and the measured column named, or a clear error before the model's imports."""
    from .columns import SMILES_COLUMNS
    from .tables import columns_of, pick_column

    columns = columns_of(source)
    pick_column(columns, smiles_column, SMILES_COLUMNS, "SMILES")
    if measured_column is not None:
        pick_column(columns, measured_column, (), "measured")


def _library_measured(source: Path, smiles_column: str | None, wanted: str | None) -> str | None:
    """A library's measured column: the one named (checked now), else one named as measured values are."""
    from .columns import value_column
    from .library_input import smiles_column_of
    from .tables import columns_of, pick_column

    columns = columns_of(source)
    if wanted is not None:
        return pick_column(columns, wanted, (), "measured")  # an unknown column is a clear error
    return value_column([c for c in columns if c != smiles_column_of(source, smiles_column)])


def _predict_library(folder: Path, source: Path, output: Path, smiles_column: str | None, executor: str,
                     address: str | None, workers: int, trust_remote_code: bool) -> tuple[Path, str]:
    """The library predicted into ``output``; where it is, and the summary line to end with."""
    from .library import CHUNK_ROWS, parts_of, parts_rows, predict_library, predict_library_ray
    from .library_input import library_rows

    if executor == "ray":
        summary = predict_library_ray(folder, source, output, smiles_column, workers=workers, address=address,
                                      trust_remote_code=trust_remote_code)
    else:
        bar, report = library_bar()
        try:
            with logging_redirect_tqdm():  # a warning on a line of its own, not after the bar
                summary = predict_library(folder, source, output, smiles_column, progress=report,
                                          trust_remote_code=trust_remote_code)
        except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on, not a traceback
            bar.close()  # counted on disk: Ctrl-C may land between a part's write and the bar's update
            kept = parts_of(output)
            written = parts_rows(kept)
            say_interrupted(f"{written:,} of {library_rows(source):,} rows written" + (
                f" (kept in {kept.name}/); the same command resumes after them" if written else
                f": rows are kept {CHUNK_ROWS:,} at a time, none was complete; the same command starts again"))
            raise typer.Exit(130) from None
        finally:  # an error (an unreadable file) is then said on a line of its own
            bar.close()
    import pyarrow.parquet as pq

    results = pq.read_table(summary.output, columns=["error", "warnings", "in_domain"]).to_pandas()
    return Path(summary.output), wrote(results, summary.output, summary.seconds, summary.resumed_rows)


def wrote(results, output: Path | str, seconds: float, resumed: int = 0) -> str:
    """The line a prediction to a file ends with, whatever the file's kind: its rows, the invalid ones, those with
    warnings and those outside the applicability domain, where, how fast, and what an interrupted run had written."""
    rows, new = len(results), len(results) - resumed
    invalid, warned = int(results["error"].notna().sum()), int(results["warnings"].notna().sum())
    outside = int((results["in_domain"] == False).sum())  # noqa: E712 - None (no training set) is not outside
    rate = new / max(seconds, 1e-9)
    speed = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"  # a few slow molecules: 0.47 / s, not 0 / s
    of = f" on the {new:,} predicted now" if resumed else ""  # 6,000 rows at 88 / s in 21.7 s did not add up
    return (f"wrote {rows:,} row{'s' * (rows != 1)} to {output} in {seconds:.1f} s ({speed} molecules/s{of}): "
            f"{invalid:,} invalid, {warned:,} with warnings, {outside:,} outside the applicability domain"
            + (f"; {resumed:,} of the rows were written before an interruption, not predicted again"
               if resumed else ""))
