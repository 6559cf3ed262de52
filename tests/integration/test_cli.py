import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from chemlm_engine import cli_predict
from chemlm_engine.cli import app
from chemlm_engine.spec import JobSpec
from chemlm_engine.store import RunStore

ROOT = Path(__file__).resolve().parents[2]

runner = CliRunner()


def test_cli_train_predict_and_runs(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["train", "--backbone", str(tiny_backbone), "--epochs", "2", "--subset", "100",
                                 "--seed", "1", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["test_rmse"] > 0

    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", "--model", summary["run_id"], "--smiles", "CCO", "--smiles", "C1CC",
                                 "--smiles", "c1ccccc1O", "--output", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert frame["prediction"].notna().tolist() == [True, False, True]
    assert "syntax" in frame.loc[1, "error"] or "parse" in frame.loc[1, "error"]
    # the applicability domain, as on the Predict page: the nearest of the run's training molecules
    assert frame["similarity"].between(0, 1).tolist() == [True, False, True]
    assert frame["in_domain"].notna().tolist() == [True, False, True]
    assert "outside the applicability domain" in result.output

    csv_in = tmp_path / "in.csv"
    pd.DataFrame({"SMILES": ["CCN", "CC(=O)O"]}).to_csv(csv_in, index=False)
    result = runner.invoke(app, ["predict", "--model", summary["run_id"], "--input", str(csv_in)])
    assert result.exit_code == 0 and "canonical_smiles" in result.output
    assert "streams it in constant memory" not in result.stderr
    monkeypatch.setattr(cli_predict, "_IN_MEMORY_ROWS", 1)  # a library too large to build its CSV in memory
    result = runner.invoke(app, ["predict", "--model", summary["run_id"], "--input", str(csv_in)])
    assert result.exit_code == 0 and "--output predictions.parquet streams it in constant memory" in result.stderr

    # a library: streamed into Parquet, input columns kept, invalid rows reported
    pd.DataFrame({"id": ["a", "b", "c"], "SMILES": ["CCN", "C1CC", "CC(=O)O"]}).to_parquet(tmp_path / "lib.parquet")
    result = runner.invoke(app, ["predict", "--model", summary["run_id"], "--input", str(tmp_path / "lib.parquet"),
                                 "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 0 and re.search(r"wrote 3 rows to .* molecules/s\): 1 invalid, 0 with warnings, "
                                               r"\d outside the applicability domain\n", result.stderr), result.stderr
    library = pd.read_parquet(tmp_path / "out.parquet")
    assert list(library["id"]) == ["a", "b", "c"] and library["prediction"].notna().tolist() == [True, False, True]

    listing = runner.invoke(app, ["runs", "list", "--json"])
    assert json.loads(listing.output)[0]["id"] == summary["run_id"]
    assert json.loads(listing.output)[0]["options"] == {}  # an object for jq, not JSON text inside JSON
    assert repr(json.loads(listing.output)[0]["subset"]) == "100"  # a count, not 100.0
    table = runner.invoke(app, ["runs", "list"]).output.splitlines()
    assert table[0].split()[:2] == ["id", "name"] and "100" in table[1].split()  # the subset, which tells runs apart
    library_run = JobSpec(method="predict", options={"model": "assets/lipo-regressor", "source": "library.csv"})
    RunStore().create_run(library_run.to_dict(), "predict", "a library")  # no recipe: its batch size is missing
    counts = [run["batch_size"] for run in json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)]
    assert repr(counts) == "[None, 16]"  # a count, not 16.0, beside a run without one
    shown = runner.invoke(app, ["runs", "show", summary["run_id"]])
    assert shown.exit_code == 0 and json.loads(shown.output)["epochs"][0]["val_mse"] > 0  # one JSON document
    exported = runner.invoke(app, ["export", summary["run_id"], str(tmp_path / "exported")])
    assert exported.exit_code == 0, exported.output
    metrics = json.loads((tmp_path / "exported" / "metrics.json").read_text())
    assert metrics["test"]["rmse"] == summary["test_rmse"] and (tmp_path / "exported" / "regressor.json").exists()
    again = runner.invoke(app, ["export", summary["run_id"], str(tmp_path / "exported")])  # never merged into a model
    assert again.exit_code != 0 and "is not empty: export into a new or empty folder" in str(again.exception)


def test_cli_reports_an_unknown_model_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "home"))
    result = _cli("predict", "--model", "no-such-run", "--smiles", "CCO", env_home=tmp_path / "home")
    assert result.returncode == 2
    assert result.stderr == "error: 'no-such-run' is neither a model folder nor a run's id or name\n"


def _cli(*args: str, env_home, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHEMLM_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "chemlm_engine", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def test_train_help_lists_the_methods_train_runs_and_names_the_other_commands():
    from typer.testing import CliRunner

    from chemlm_engine.cli import app

    text = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output.split())
    listed = re.search(r"--method <str> ([a-z0-9 |-]+) \(", text)
    assert listed is not None, text
    assert "lora" in listed[1].split(" | ") and not {"search", "pretrain", "predict", "influence"} & set(
        listed[1].split(" | ")), listed[1]
    assert "own commands: influence, tune, pretrain, predict" in text


def test_a_user_error_is_one_line_and_exit_code_2(tmp_path):
    result = _cli("train", "--learning-rate", "nan", env_home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: learning_rate must be a finite number, not nan"
    debug = _cli("--debug", "train", "--learning-rate", "nan", env_home=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_sigterm_marks_a_cli_run_interrupted_and_kill_9_is_reconciled(tiny_backbone, tmp_path):
    home = tmp_path / "home"
    args = [sys.executable, "-m", "chemlm_engine", "train", "--backbone", str(tiny_backbone), "--epochs", "500",
            "--subset", "200", "--batch-size", "16"]
    store = RunStore(home=home)
    for sig, expected in ((signal.SIGTERM, "interrupted (SIGINT / SIGTERM)"),
                          (signal.SIGKILL, "the process running it stopped")):
        process = subprocess.Popen(args, env={**os.environ, "CHEMLM_HOME": str(home)}, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not [r for r in store.runs() if r.status == "running" and r.pid == process.pid]:
            assert time.time() < deadline and process.poll() is None, "the run never started"
            time.sleep(0.2)
        process.send_signal(sig)
        err = process.communicate(timeout=60)[1]
        if sig == signal.SIGTERM:  # stopped like Ctrl-C: exit 130 and one line, no traceback
            assert process.returncode == 130 and err.strip().splitlines()[-1].startswith("interrupted: run "), err
            assert "Traceback" not in err
        if sig == signal.SIGKILL:
            assert store.runs()[0].status == "running"  # nobody was left to say otherwise ...
            assert "interrupted" in _cli("runs", "list", env_home=home).stdout  # ... until someone looks
        record = store.runs()[0]
        assert (record.status, record.message) == ("interrupted", expected)
        shown = json.loads(_cli("runs", "show", record.id, env_home=home).stdout)
        assert (shown["status"], shown["message"]) == ("interrupted", expected)  # why it stopped, on the CLI too
        assert not (home / record.id).exists()


def _cli_patched(tmp_path, patch: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI run as ``python -m`` (as installed) after ``patch``, Python code that makes a signal come at a chosen
    moment; CHEMLM_HOME is tmp_path / "home"."""
    (tmp_path / "patched_cli.py").write_text(f"import os, signal\nfrom chemlm_engine import cli\n{patch}\ncli.main()\n")
    return subprocess.run([sys.executable, "-m", "patched_cli", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "CHEMLM_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)},
                          timeout=300)


_TRAIN = ("train", "--epochs", "500", "--subset", "200", "--batch-size", "16", "--backbone")
# a store method wrapped to send the process a signal on the way, as Ctrl-C or SIGTERM would at that moment
_SIGNAL_IN = ("from chemlm_engine.store import RunStore\nkept_{method} = RunStore.{method}\n"
              "def signalled_{method}(self, *args, **kwargs):\n    {before}\n"
              "    return kept_{method}(self, *args, **kwargs)\nRunStore.{method} = signalled_{method}\n")


def test_sigterm_inside_code_that_exec_compiled_still_exits_130(tiny_backbone, tmp_path):
    """SIGTERM landing while a dataclass is made or an annotation read (code exec() / eval() compiled from a
    string) made CPython 3.11 exit by SIGINT (-2) after the CLI had stopped cleanly with 130 (CI saw it once)."""
    sigterm_in_exec = "exec('os.kill(os.getpid(), signal.SIGTERM)\\nfor _ in range(10 ** 6): pass')"
    result = _cli_patched(tmp_path, _SIGNAL_IN.format(method="set_info", before=sigterm_in_exec),
                          *_TRAIN, str(tiny_backbone))
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("interrupted: run ")
    assert RunStore(home=tmp_path / "home").runs()[0].status == "interrupted"


def test_a_second_ctrl_c_while_the_command_stops_is_ignored(tiny_backbone, tmp_path):
    """Pressed twice, Ctrl-C cut short what the first one started: the run was never recorded as interrupted (and
    the process could end by SIGINT, -2, instead of 130)."""
    again = "os.kill(os.getpid(), signal.SIGINT)"
    result = _cli_patched(tmp_path, _SIGNAL_IN.format(method="set_info", before=again)
                          + _SIGNAL_IN.format(method="interrupt", before=again),
                          *_TRAIN, str(tiny_backbone))
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert RunStore(home=tmp_path / "home").runs()[0].status == "interrupted"


def test_a_second_ctrl_c_while_python_exits_is_ignored_too(tmp_path):
    """Python's exit puts a handler written in Python back to the default: a second Ctrl-C then, as QA pressed it
    0.2 s after the first while torch was being torn down, ended the process by SIGINT (-2)."""
    late = ("from chemlm_engine.predict import ensemble\n"
            "ensemble.load_predictor = lambda *a, **k: os.kill(os.getpid(), signal.SIGINT)\n"
            "class Late:\n    def __del__(self):\n        os.kill(os.getpid(), signal.SIGINT)\n"
            "torn_down_last = Late()\n")
    result = _cli_patched(tmp_path, late, "predict", "-s", "CCO")
    assert result.returncode == 130 and result.stderr.strip() == "interrupted: nothing written", result.stderr


def test_an_interrupted_prediction_of_pasted_smiles_points_to_no_file_kind(tmp_path):
    """--output NAME.parquet keeps the rows of a file as they are predicted: no hint for two SMILES on stdout."""
    stop = ("from chemlm_engine.predict import batch\n"
            "batch.prepare_all = lambda *a, **k: os.kill(os.getpid(), signal.SIGINT)")
    result = _cli_patched(tmp_path, stop, "predict", "-s", "CCO", "-s", "CCN")
    assert result.returncode == 130 and result.stderr.strip() == "interrupted: nothing written", result.stderr


def test_an_interrupt_before_any_step_has_a_word_still_says_so(tmp_path):
    """Ctrl-C while the model loads ended the command with 130 and not a word."""
    load = ("from chemlm_engine.predict import ensemble\n"
            "ensemble.load_predictor = lambda *a, **k: os.kill(os.getpid(), signal.SIGINT)")
    result = _cli_patched(tmp_path, load, "predict", "-s", "CCO")
    assert result.returncode == 130 and result.stderr.strip() == "interrupted: nothing written", result.stderr


def test_predict_refuses_a_folder_that_ships_code_without_the_flag(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(ROOT / "assets" / "lipo-regressor" / "member-0", folder, ignore=shutil.ignore_patterns("backbone"))
    meta = json.loads((folder / "regressor.json").read_text())
    (folder / "regressor.json").write_text(json.dumps({**meta, "trust_remote_code": True}))
    result = _cli("predict", "--model", str(folder), "--smiles", "CCO", env_home=tmp_path)
    assert result.returncode == 2 and "needs trust_remote_code" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_predict_csv_keeps_columns_reports_progress_and_measured(tiny_backbone, store, tmp_path):
    from chemlm_engine.spec.config import DataSpec, JobSpec, ModelSpec, TrainConfig
    from chemlm_engine.jobs import run_job
    from chemlm_engine.model import RegressionModel
    from chemlm_engine.predict.batch import predict_csv, unread_measured

    run = store.get_run(run_job(JobSpec(data=DataSpec(subset=80), model=ModelSpec(backbone=str(tiny_backbone),
                                        head_hidden=8), train=TrainConfig(epochs=1)), store))
    (tmp_path / "in.csv").write_text("ID;SMILES;exp;note\nm1;CCO;0,1;a\nm2;C1CC;n.d.;b\n" +
                                     "".join(f"x{i};{'C' * (i + 1)}O;;c\n" for i in range(300)))
    seen = []
    out = predict_csv(RegressionModel.load(run.model_path), tmp_path / "in.csv", name_column="ID",
                      measured_column="exp", progress=lambda done, total: seen.append((done, total)))
    assert out["name"].tolist()[:2] == ["m1", "m2"] and out["note"].tolist()[:2] == ["a", "b"]
    assert out["measured"].tolist()[0] == 0.1 and out["measured"].notna().sum() == 1 and len(out) == 302
    assert unread_measured(out) == "1 measured value is not a number (e.g. 'n.d.'), left out of the metrics"
    # counts up from 0 in about ten steps (distinct valid molecules: m1 and x1 are both CCO), however few there are
    assert seen[0] == (0, 300) and seen[-1] == (300, 300) and len(seen) == 11
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_one_executor_vocabulary_and_an_unknown_executor_is_refused():
    from typer.testing import CliRunner

    from chemlm_engine.cli import app
    from chemlm_engine.spec.config import EXECUTORS

    assert set(EXECUTORS) == {"process", "thread", "ray"}  # the app's sidebar offers the same words
    for args, valid in ((["train", "--executor", "local"], "process, thread, ray"),
                        (["influence", "some-run", "--executor", "cluster"], "process, thread, ray"),
                        (["predict", "--smiles", "CCO", "--executor", "process"], "thread, ray")):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "is not one of" in result.output and valid in result.output, result.output


def test_the_process_executor_runs_a_cli_job_in_a_child_process(tiny_backbone, tmp_path):
    from chemlm_engine.store.runs import RunStore

    cli = subprocess.Popen([sys.executable, "-m", "chemlm_engine", "train", "--backbone", str(tiny_backbone),
                            "--epochs", "1", "--subset", "60", "--executor", "process"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env={**os.environ, "CHEMLM_HOME": str(tmp_path / "home")})
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    line = json.loads(out.strip().splitlines()[-1])
    assert line["status"] == "finished" and "test_r2" in line
    run = RunStore(home=tmp_path / "home").get_run(line["run_id"])
    assert run.pid is not None and run.pid != cli.pid  # run by a child of the command, not the command itself


def test_ctrl_c_on_a_library_says_what_is_kept_without_tracebacks_and_the_same_command_resumes(regressor_dir, lipo,
                                                                                               tmp_path):
    source, output = tmp_path / "library.csv", tmp_path / "out.parquet"
    rows = 3 * 4096  # three chunks of the CLI's 4,096 rows
    pd.DataFrame({"smiles": [lipo.smiles[i % 1000] for i in range(rows)]}).to_csv(source, index=False)
    args = [sys.executable, "-m", "chemlm_engine", "predict", "--model", str(regressor_dir), "--input", str(source),
            "--output", str(output)]
    # as started from a terminal: Ctrl-C not ignored (an xdist worker ignores it, and a child inherits that)
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = output.with_name(output.name + ".parts") / "part-000000.parquet"
    deadline = time.time() + 240
    while not first.exists():
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the command and every helper it started
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    said = re.search(r"interrupted: ([\d,]+) of 12,288 rows written", err)
    assert said and "the same command resumes" in err, err
    kept = int(said[1].replace(",", ""))  # one chunk, or two where Ctrl-C landed after the next one was written
    assert kept in (4096, 8192) and kept == sum(len(pd.read_parquet(p)) for p in first.parent.glob("part-*.parquet"))
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    said = f"; {kept:,} of the rows were written before an interruption, not predicted again"
    assert again.returncode == 0 and said in again.stderr, again.stderr
    resumed_bar = next(line for line in again.stderr.splitlines() if "/12288" in line)  # the first drawing:
    assert f"{kept}/12288" in resumed_bar and "?mol/s" in resumed_bar, resumed_bar  # kept rows done, no speed yet
    assert len(pd.read_parquet(output)) == rows


def test_a_resumed_library_counts_only_its_own_rows_towards_its_speed():
    from chemlm_engine.cli_predict import library_bar

    bar, report = library_bar(file=io.StringIO())
    report(4096, 10_000)  # written before an interruption
    report(4352, 10_000)
    assert (bar.n, bar.total) == (4352, 10_000) and bar.n - bar.format_dict["initial"] == 256  # the rate's rows
    bar.close()


def test_a_library_whose_kept_rows_are_discarded_says_so_on_a_line_of_its_own(regressor_dir, lipo, tmp_path):
    """Not glued to the progress bar's line, where it was easy to miss."""
    source, output = tmp_path / "library.csv", tmp_path / "out.parquet"
    pd.DataFrame({"smiles": lipo.smiles[:20]}).to_csv(source, index=False)
    parts = output.with_name(output.name + ".parts")
    parts.mkdir()
    (parts / "manifest.json").write_text('{"source": "another file"}')
    pd.DataFrame({"row": range(1, 6)}).to_parquet(parts / "part-000000.parquet")
    result = subprocess.run([sys.executable, "-m", "chemlm_engine", "predict", "--model", str(regressor_dir),
                             "--input", str(source), "--output", str(output)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    said = [line.split("\r")[-1] for line in result.stderr.splitlines() if "were for another input" in line]
    assert len(said) == 1 and "WARNING" in said[0] and "the 5 rows an interrupted run" in said[0], result.stderr
    assert "mol/s" not in said[0] and len(pd.read_parquet(output)) == 20


@pytest.mark.parametrize("stopped_in, said", [
    # after a part's write, before the bar heard of it: the part on disk still counts
    ("_return_freed_memory", ("interrupted: 3 of 3 rows written", "the same command resumes after them")),
    # before any part was written: nothing to resume after
    ("predict_frame", ("interrupted: 0 of 3 rows written: rows are kept 4,096 at a time, none was",
                       "the same command starts")),
])
def test_ctrl_c_on_a_library_counts_the_rows_on_disk_and_says_how_to_go_on(regressor_dir, tmp_path, monkeypatch,
                                                                          stopped_in, said):
    from chemlm_engine import library

    source, output = tmp_path / "library.csv", tmp_path / "out.parquet"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "CC(=O)O"]}).to_csv(source, index=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(library, stopped_in, interrupted)
    result = runner.invoke(app, ["predict", "--model", str(regressor_dir), "--input", str(source),
                                 "--output", str(output)])
    assert result.exit_code == 130 and all(words in result.stderr for words in said), result.stderr


def test_ctrl_c_on_a_prediction_written_whole_says_nothing_was_kept_and_which_output_keeps_rows(regressor_dir,
                                                                                              tmp_path, monkeypatch):
    source = tmp_path / "library.csv"
    source.write_text("smiles\nCCO\nCCN\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    from chemlm_engine.predict import batch

    monkeypatch.setattr(batch, "predict_csv", interrupted)  # imported by the command when it runs
    result = runner.invoke(app, ["predict", "--model", str(regressor_dir), "--input", str(source),
                                 "--output", str(tmp_path / "out.csv")])
    assert result.exit_code == 130 and not (tmp_path / "out.csv").exists()
    assert "interrupted: nothing written" in result.stderr and "--output NAME.parquet keeps rows" in result.stderr


def test_runs_list_shows_a_library_prediction_without_a_recipe_and_survives_an_unreadable_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "home"))
    store = RunStore(home=tmp_path / "home")
    unreadable = store.create_run({"method": "predict", "options": {"chunk_rows": 0}}, "predict", "from elsewhere")
    result = runner.invoke(app, ["runs", "list"])
    assert result.exit_code == 0 and unreadable in result.output, result.output  # no backbone column at all
    library = JobSpec(method="predict", options={"model": "assets/lipo-regressor", "source": "library.csv"})
    library_id = store.create_run(library.to_dict(), "predict", "a library")
    line = next(row for row in runner.invoke(app, ["runs", "list"]).output.splitlines() if library_id in row)
    assert "random" not in line and line.split()[5:9] == ["–"] * 4  # after "a library": backbone, split, subset, seed


def test_predict_writes_an_sd_input_back_with_its_predictions_in_each_record(regressor_dir, tmp_path):
    from rdkit import Chem

    with Chem.SDWriter(str(tmp_path / "vendor.sdf")) as writer:
        for smiles, name in (("CCO", "ethanol"), ("c1ccccc1O", "phenol")):
            mol = Chem.MolFromSmiles(smiles)
            mol.SetProp("_Name", name)
            mol.SetProp("logD", "0.5")
            writer.write(mol)
    result = runner.invoke(app, ["predict", "--model", str(regressor_dir), "--input", str(tmp_path / "vendor.sdf"),
                                 "--measured-column", "logD", "--output", str(tmp_path / "out.sdf")])
    assert result.exit_code == 0, result.output
    written = list(Chem.SDMolSupplier(str(tmp_path / "out.sdf")))
    assert [m.GetProp("_Name") for m in written] == ["ethanol", "phenol"]
    assert all(m.GetProp("logD") == "0.5" and math.isfinite(float(m.GetProp("chemlm_prediction"))) for m in written)
    assert not any(m.HasProp("chemlm_name") or m.HasProp("chemlm_row") for m in written)  # the record's own: not again


def test_a_streamed_prediction_gives_the_same_metrics_line_as_a_csv_and_checks_the_column_first(regressor_dir, lipo,
                                                                                                   tmp_path):
    source = tmp_path / "mine.csv"  # a training molecule, two cells not numbers: each said on both paths
    source.write_text(f"SMILES,logD7.4 (exp)\n{lipo.smiles[0]},1\nCCO,\"-0,3\"\nc1ccccc1O,1.5\nCCCCCC,3.1\nCCN,n/a\n")
    said = {}
    for suffix in ("csv", "parquet"):
        result = runner.invoke(app, ["predict", "--model", str(regressor_dir), "-i", str(source), "-o",
                                     str(tmp_path / f"out.{suffix}")])
        assert result.exit_code == 0, result.output
        said[suffix] = [line for line in result.stderr.splitlines() if "measured" in line or "trained on" in line]
        assert result.stderr.splitlines()[-1].startswith("wrote 5 rows")  # the summary last, on either path
    assert said["parquet"] == said["csv"] and len(said["csv"]) == 4, said  # + the 2 predicted rows left without
    assert said["csv"][0].startswith("against measured (logD7.4 (exp)): n 2, mse")  # -0,3 beside 1.5: not a number
    wrong = runner.invoke(app, ["predict", "--model", str(regressor_dir), "-i", str(source), "-o",
                                str(tmp_path / "again.parquet"), "--measured-column", "logd"])
    assert "measured column 'logd' not found" in str(wrong.exception) and not (tmp_path / "again.parquet").exists()


def test_a_large_sd_input_is_written_back_through_the_streamed_path_with_the_same_fields(regressor_dir, tmp_path,
                                                                                      monkeypatch):
    from rdkit import Chem

    from chemlm_engine import cli_predict

    with Chem.SDWriter(str(tmp_path / "vendor.sdf")) as writer:
        for smiles in ("CCO", "c1ccccc1O", "C(C)(C)(C)(C)C"):  # the last one is invalid chemistry: an error row
            writer.write(Chem.MolFromSmiles(smiles, sanitize=False))
    command = ["predict", "--model", str(regressor_dir), "--input", str(tmp_path / "vendor.sdf"), "--output"]
    assert runner.invoke(app, [*command, str(tmp_path / "small.sdf")]).exit_code == 0  # in memory
    monkeypatch.setattr(cli_predict, "_IN_MEMORY_ROWS", 2)  # "large": over this many rows
    result = runner.invoke(app, [*command, str(tmp_path / "large.sdf")])
    assert result.exit_code == 0, result.output
    assert "large.sdf.parquet" in result.output and (tmp_path / "large.sdf.parquet").exists()
    small, large = ((tmp_path / f"{name}.sdf").read_text().split("$$$$\n") for name in ("small", "large"))
    assert len(large) == 4 and large == small  # the same records, fields and values as the in-memory path wrote


def test_predict_writes_an_excel_workbook(regressor_dir, tmp_path):
    from chemlm_engine.tables import read_table

    result = runner.invoke(app, ["predict", "--model", str(regressor_dir), "-s", "CCO", "-s", "C1CC",
                                 "--output", str(tmp_path / "out.xlsx")])
    assert result.exit_code == 0, result.output
    back = read_table(tmp_path / "out.xlsx").frame
    assert back["input"].tolist() == ["CCO", "C1CC"] and math.isfinite(float(back["prediction"][0]))
    assert back["prediction"][1] == ""
    assert "parse" in back["error"][1]


def test_the_output_is_of_the_kind_its_name_says(regressor_dir, tmp_path):
    """Pasted SMILES to .parquet were written as CSV, and a library to .PARQUET as CSV (the suffix read in lower
    case only)."""
    pasted = tmp_path / "pasted.parquet"
    result = runner.invoke(app, ["predict", "--model", str(regressor_dir), "-s", "CCO", "-s", "C1CC",
                                 "-o", str(pasted)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(pasted)
    assert table["input"].tolist() == ["CCO", "C1CC"] and table["error"].notna().tolist() == [False, True]
    source, library = tmp_path / "library.csv", tmp_path / "LIBRARY.PARQUET"
    pd.DataFrame({"smiles": ["CCO", "CCN"]}).to_csv(source, index=False)
    result = runner.invoke(app, ["predict", "--model", str(regressor_dir), "-i", str(source), "-o", str(library)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(library)["smiles"].tolist() == ["CCO", "CCN"]


def test_predict_finds_a_measured_column_by_its_name_as_the_predict_page_does(regressor_dir, lipo, tmp_path):
    from typer.testing import CliRunner

    from chemlm_engine.cli import app

    (tmp_path / "mine.csv").write_text("Compound ID,SMILES,logD7.4 (exp)\nA,CCO,-0.3\nB,c1ccccc1O,1.5\nC,CCCCCC,3.1\n")
    args = ["predict", "--model", str(regressor_dir), "-i", str(tmp_path / "mine.csv"), "-o", str(tmp_path / "o.csv")]
    found = CliRunner().invoke(app, args)
    assert found.exit_code == 0, found.output
    assert "against measured (logD7.4 (exp)): n 3, mse" in found.output  # no --measured-column needed
    trained_on = lipo.smiles[:2]  # the fixture model's training set begins with these
    (tmp_path / "seen.csv").write_text(f"SMILES,logD7.4 (exp)\n{trained_on[0]},1\n{trained_on[1]},2\nCCO,-0.3\n"
                                       "c1ccccc1O,1.5\nCCCCCC,3.1\n")
    seen = CliRunner().invoke(app, [*args[:4], str(tmp_path / "seen.csv"), "-o", str(tmp_path / "s.csv")])
    assert "against measured (logD7.4 (exp)): n 3, mse" in seen.output, seen.output
    assert "note: 2 rows are molecules the model trained on, or a stereoisomer of one (in_training): not in these " \
           "numbers" in seen.output
    assert pd.read_csv(tmp_path / "s.csv")["in_training"].tolist() == [True, True, False, False, False]
    (tmp_path / "header.csv").write_text("SMILES,logD7.4 (exp)\n")  # nothing to score: said, not "n 0, ..."
    empty = CliRunner().invoke(app, [*args[:4], str(tmp_path / "header.csv"), "-o", str(tmp_path / "h.csv")])
    assert "against measured (logD7.4 (exp)): 0 rows with a prediction and a measured value: no metrics" in empty.output
    (tmp_path / "plain.csv").write_text("smiles,name\nCCO,A\n")
    plain = CliRunner().invoke(app, [*args[:4], str(tmp_path / "plain.csv"), "-o", str(tmp_path / "p.csv")])
    assert plain.exit_code == 0 and "against measured" not in plain.output


def test_predict_freezes_what_it_imported_out_of_the_full_garbage_collections(regressor_dir, tmp_path):
    """A one-shot process: the imports' objects stay until it ends, so no full collection rescans them."""
    import gc

    from typer.testing import CliRunner

    from chemlm_engine.cli import app

    gc.unfreeze()
    try:
        result = CliRunner().invoke(app, ["predict", "--model", str(regressor_dir), "-s", "CCO"])
        assert result.exit_code == 0, result.output
        assert gc.get_freeze_count() > 100_000
    finally:
        gc.unfreeze()  # this test process goes on
