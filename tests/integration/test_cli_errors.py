"""Every malformed CLI invocation answers with one clear line on stderr and exit code 2, never a traceback,
and leaves no partial output file."""
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chemlm_engine.spec import DataSpec, JobSpec
from chemlm_engine.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets" / "lipo-regressor"


def _model_without_training_set(folder: Path) -> Path:
    folder.mkdir()
    for item in MODEL.iterdir():
        if item.name not in ("training_set.csv", "training_fingerprints.npz"):
            (folder / item.name).symlink_to(item)
    return folder


def _small_files() -> None:
    """The child may write at most 2 kB per file: a longer write fails as a full disk would (EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


# (arguments, what stderr must say, output file that must not exist afterwards); {tmp} is the test's folder
ONE_LINE_ERRORS = {
    "output folder missing": (["predict", "-s", "CCO", "--output", "{tmp}/nowhere/out.csv"],
                              "folder {tmp}/nowhere does not exist", "{tmp}/nowhere/out.csv"),
    "output folder read-only": (["predict", "--input", "{tmp}/d.csv", "--output", "/sys/out.csv"],  # said before
                                "cannot write /sys/out.csv: Permission denied", "/sys/out.csv"),  # the work, not after
    "library output folder read-only": (["predict", "--input", "{tmp}/d.csv", "--output", "/sys/out.parquet"],
                                        "cannot write /sys/out.parquet: Permission denied", "/sys/out.parquet"),
    "output folder is a file": (["predict", "-s", "CCO", "--output", "{tmp}/d.csv/out.csv"],
                                "{tmp}/d.csv is a file, not a folder: choose another output path", None),
    "ray output folder read-only": (["predict", "--input", "{tmp}/d.csv", "--output", "/sys/rayout", "--executor",
                                     "ray"], "cannot write /sys/rayout: Permission denied", None),  # before Ray starts
    "ray output in a file": (["predict", "--input", "{tmp}/d.csv", "--output", "{tmp}/d.csv/out", "--executor", "ray"],
                             "{tmp}/d.csv is a file, not a folder", None),
    "output is a folder": (["predict", "-s", "CCO", "--output", "{tmp}"], "is a folder: give a file name", None),
    "output is the input": (["predict", "--input", "{tmp}/d.csv", "--output", "{tmp}/noset/../d.csv"],  # left as is
                            "{tmp}/noset/../d.csv is the input file: the results would replace it; name another, e.g. "
                            "d-predictions.csv", None),
    "ray output named as a CSV": (["predict", "--input", "{tmp}/d.csv", "--output", "{tmp}/r.csv", "--executor", "ray"],
                                  "{tmp}/r.csv: --executor ray writes a folder of Parquet files", "{tmp}/r.csv"),
    "output is a link to the input": (["predict", "--input", "{tmp}/d.csv", "--output", "{tmp}/hard.csv"],
                                      "{tmp}/hard.csv is the input file", None),
    "output write fails": (["predict", *["-s", "CCO"] * 40, "--output", "{tmp}/out.csv"], "cannot write {tmp}/out.csv",
                           "{tmp}/out.csv"),
    "workbook write fails": (["predict", *["-s", "CCO"] * 40, "--output", "{tmp}/out.xlsx"],
                             "cannot write {tmp}/out.xlsx", "{tmp}/out.xlsx"),  # and no second traceback
    "explain without training set": (["explain", "-s", "CCO", "--model", "{tmp}/noset", "--output", "{tmp}/why"],
                                     "has no saved training set", "{tmp}/why.csv"),
    "explain two molecules": (["explain", "-s", "CCO", "-s", "CCC", "--output", "{tmp}/why"],
                              "explain takes one molecule (--smiles given 2 times); predict takes many",
                              "{tmp}/why.csv"),
    "explain a non-molecule": (["explain", "-s", "C1CC", "-o", "{tmp}/why"], "--smiles C1CC: cannot parse SMILES: "
                               "unclosed ring", "{tmp}/why.csv"),
    "unknown database scheme": (["runs", "list", "--db", "foo://bar"], "cannot open the run store 'foo://bar'",
                                None),
    "CHEMLM_HOME is a file": (["runs", "list"], "is a file: point CHEMLM_HOME at a folder", None),
    "backbone folder missing": (["train", "--backbone", "{tmp}/no-backbone", "--subset", "50", "--epochs", "1"],
                                "cannot load backbone: folder {tmp}/no-backbone does not exist", None),
    "label column missing": (["train", "--data", "{tmp}/d.csv", "--label-column", "logd", "--epochs", "1"],
                             "label column 'logd' not found; columns are ['smiles', 'y']", None),
    "not a finite learning rate": (["train", "--learning-rate", "nan"], "learning_rate must be a finite number",
                                   None),
    "unknown method option": (["train", "--subset", "50", "--option", "nosuch=1"], "nosuch", None),
    "unknown run": (["runs", "show", "no-such-run"], "no-such-run", None),
    "unknown split": (["train", "--split", "diagonal", "--subset", "50"], "diagonal", None),
    "input missing": (["predict", "--input", "{tmp}/none.csv", "--output", "{tmp}/out.csv"],  # said before loading
                      "cannot open {tmp}/none.csv: no such file", "{tmp}/out.csv"),
    "input missing, output there": (["predict", "--input", "{tmp}/none.csv", "--output", "{tmp}/d.csv"],
                                    "cannot open {tmp}/none.csv: no such file", None),
    # before the model: here one that does not exist would be said first
    "measured column missing": (["predict", "-i", "{tmp}/d.csv", "--measured-column", "logd", "--model", "{tmp}/no",
                                 "-o", "{tmp}/out.csv"], "measured column 'logd' not found; columns are ['smiles', "
                                "'y']", "{tmp}/out.csv"),
    "SMILES column missing": (["predict", "-i", "{tmp}/d.csv", "--smiles-column", "smi", "--model", "{tmp}/no"],
                              "SMILES column 'smi' not found", None),
    "model folder that is no model": (["predict", "-s", "CCO", "--model", "{tmp}", "-o", "{tmp}/out.csv"],
                                      "{tmp} is not a ChemLM model folder (no regressor.json or "
                                      "ensemble.json)", "{tmp}/out.csv"),
    "SD output of a CSV": (["predict", "--input", "{tmp}/d.csv", "--output", "{tmp}/out.sdf"],
                           "an SD output is a copy of the SD input", "{tmp}/out.sdf"),
    "output of no kind written": (["predict", "-s", "CCO", "--output", "{tmp}/out.json"],
                                  "name the output .csv, .parquet or .xlsx", "{tmp}/out.json"),
    "Parquet input to a CSV": (["predict", "--input", "{tmp}/lib.parquet", "--output", "{tmp}/out.csv"],
                               "written as Parquet: name the output .parquet", "{tmp}/out.csv"),
    "library without an output": (["predict", "--input", "{tmp}/lib.parquet"], "give --output predictions.parquet",
                                  None),
    "spec file missing": (["train", "--spec", "{tmp}/nospec.json"], "cannot read the spec", None),
    "spec not JSON": (["train", "--spec", "{tmp}/garbage.json"], "is not JSON", None),
    "spec of something else": (["train", "--spec", "{tmp}/other.json"], "is not a job spec (unknown: not)", None),
    "settings beside a spec": (["train", "--spec", "{tmp}/spec.json", "--epochs", "3", "--no-augment"],
                               "--spec runs the file as written, so --epochs, --augment would be ignored", None),
    "predict both --smiles and --input": (["predict", "-s", "CCO", "--input", "{tmp}/d.csv"], "not both", None),
    "predict --smiles with a file's column": (["predict", "-s", "CCO", "--measured-column", "y"],
                                              "name columns of --input", None),
    "spec of another command's job": (["train", "--spec", "{tmp}/influence.json"], "influence has its own command",
                                       None),
    "spec with a misspelt setting": (["train", "--spec", "{tmp}/typo.json"], "train has no setting epoch (misspelt?)",
                                     None),
    "spec with a wrong type": (["train", "--spec", "{tmp}/type.json"], "setting 'train.epochs' must be int, not 'two'",
                               None),
    "influence of an unfinished run": (["influence", "A-CANCELLED-RUN"], "the base of an influence job is a "
                                       "finished single model", None),
    "tune a method no search can tune": (["tune", "--method", "pretrain"], "option 'method' must be one of", None),
    "tune into a missing folder": (["tune", "-o", "{tmp}/no-folder/best.json"], "folder {tmp}/no-folder does not "
                                   "exist", "{tmp}/no-folder/best.json"),
    "library prediction as training": (["train", "--method", "predict"], "predict has its own command: chemlm "
                                       "predict", None),
    "a search as training": (["train", "--method", "search", "--subset", "50"], "chemlm tune (train runs baseline",
                             None),
    "an option given twice": (["train", "--method", "lora", "--option", "rank=4", "--option", "rank=8"],
                              "--option rank is given twice", None),
    "a misspelt method": (["train", "--method", "lroa"], "unknown method 'lroa'; train runs baseline, mlm", None),
    "a negative patience": (["train", "--patience", "-1"], "patience must be 0 (off) or a number of epochs", None),
    "an option without a value": (["train", "--method", "lora", "--option", "rank"],
                                  "--option 'rank': give KEY=VALUE, e.g. --option rank=4", None),
    "hub backbone without a network": (["train", "--backbone", "no-such-org/no-such-model", "--subset", "50"],
                                       "cannot be reached from this machine", None),
    "database driver missing": (["runs", "list", "--db", "postgresql+psycopg://user@host/chemlm"],
                                "its driver is not installed", None),
}


@pytest.mark.parametrize("case", list(ONE_LINE_ERRORS))
def test_a_user_error_is_one_line_exit_code_2_and_no_partial_output(case, tmp_path):
    args, message, output = (value.format(tmp=tmp_path) if isinstance(value, str) else value
                             for value in ONE_LINE_ERRORS[case])
    args = [a.format(tmp=tmp_path) for a in args]
    home = tmp_path / "home"
    if case == "CHEMLM_HOME is a file":
        home.write_text("not a folder")
    if "A-CANCELLED-RUN" in args:
        cancelled = RunStore(home=home).create_run(JobSpec().to_dict(), "baseline", "stopped")
        RunStore(home=home).cancel(cancelled)
        args = [cancelled if a == "A-CANCELLED-RUN" else a for a in args]
    _model_without_training_set(tmp_path / "noset")
    (tmp_path / "d.csv").write_text("smiles,y\nCCO,1\nCCC,2\n")
    os.link(tmp_path / "d.csv", tmp_path / "hard.csv")  # a hard link: the same file under another name
    (tmp_path / "lib.parquet").write_bytes(b"PAR1 never read: refused before")  # there, so not a missing input
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"not": "a spec"}')
    (tmp_path / "typo.json").write_text('{"method": "baseline", "train": {"epoch": 1}}')  # a stored one's is dropped
    (tmp_path / "influence.json").write_text('{"method": "influence"}')  # as `runs show` gives an influence run's
    (tmp_path / "type.json").write_text('{"method": "baseline", "train": {"epochs": "two"}}')
    (tmp_path / "spec.json").write_text(JobSpec(method="baseline", data=DataSpec(subset=50)).to_json())
    result = subprocess.run([sys.executable, "-m", "chemlm_engine", *args], capture_output=True, text=True,
                            env={**os.environ, "CHEMLM_HOME": str(home), "HF_ENDPOINT": "https://127.0.0.1:9"},
                            cwd=ROOT, timeout=300,
                            preexec_fn=_small_files if case.endswith("write fails") else None)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    if output is not None:
        assert not Path(output).exists() and not list(Path(output).parent.glob(".*.partial"))
    assert (tmp_path / "d.csv").read_text() == "smiles,y\nCCO,1\nCCC,2\n"
    if args[0] == "train" and home.is_dir():  # refused before a run exists: nothing failed in the store
        assert RunStore(home=home).runs() == []


@pytest.mark.parametrize("recorded", [False, True])
def test_ctrl_c_says_whether_a_run_was_stored(recorded, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from chemlm_engine import jobs
    from chemlm_engine.cli import app

    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path))

    def interrupted(spec, store, **_):
        if recorded:  # Ctrl-C in training: the run exists; before it, while its data is read, it does not
            store.create_run(spec.to_dict(), spec.method, spec.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "run_job", interrupted)
    result = CliRunner().invoke(app, ["train", "--subset", "50"])
    runs = RunStore(home=tmp_path).runs()
    assert len(runs) == recorded
    said = f"interrupted: run {runs[0].id} is stored as interrupted" if recorded else "before the run was recorded"
    assert said in result.output
