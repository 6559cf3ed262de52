"""Distilling a deep ensemble into one student (options: :class:`~chemlm_engine.spec.DistillOptions`).

The student is the job's regressor recipe trained on the teacher's mean prediction for each training molecule
(selecting its epoch by how closely it follows the teacher on the validation molecules, or with ``train_on_val``
training on both for the set epochs, as the ensemble's shipping recipe does); a ridge on the student's last-layer
inputs learns the members' spread; the split-conformal interval is calibrated anew on molecules neither the
teacher's members nor the student trained on. Prediction then costs one forward pass instead of one per member.
A ``transfer`` file of unlabelled SMILES (a library to screen, a corpus) adds molecules the teacher labels for the
student only: the more of the teacher's function it sees, the closer it follows (none of the job's molecules).
A teacher blended with trees keeps them: the student replaces its members only (it learns their mean and spread), and
the distilled model blends its prediction with the same trees at the same weight.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..data import MoleculeData
from ..errors import ConfigError, DataError
from ..inference import last_layer_inputs
from ..model import best_device
from ..pipeline import JobContext, SplitData, load_pool, train_and_evaluate
from ..predict.domain import TrainingReference
from ..predict.ensemble import ENSEMBLE_FILE, Conformal, Ensemble, SpreadModel, is_ensemble
from ..spec import DistillOptions, JobSpec
from ..store import Kinds, RunStore
from ..training import regression_metrics
from .ensemble import calibration_split, interval_quality

__all__ = ["run_distill", "teacher_folder", "check_teacher"]


def teacher_folder(store: RunStore, teacher: str) -> Path:
    """The model folder of a finished ensemble run (by id or name), or ``teacher`` itself as a folder."""
    run = next((r for r in store.runs(status="finished") if teacher in (r.id, r.name)), None)
    folder = Path(run.model_path) if run is not None and run.model_path else Path(teacher)
    if not folder.is_dir():
        raise ConfigError(f"teacher {teacher!r} is neither a finished run with a model nor a model folder")
    return folder


def _check_unseen(folder: Path, data: SplitData) -> None:
    """The teacher must not have trained on the job's test molecules: its labels would leak into the student."""
    reference = TrainingReference.load(folder)
    if reference is None:
        raise DataError(f"{folder} has no saved training set, so it cannot be checked against the test split")
    seen = set(reference.smiles) & set(data.test.smiles)
    if seen:
        raise DataError(f"the teacher trained on {len(seen)} of this job's test molecules: distil it on the data, "
                        "split and seed it was trained with")


def check_teacher(spec: JobSpec, data: SplitData, store: RunStore) -> None:
    """Before a run: the teacher is an ensemble and never saw this job's test molecules."""
    folder = teacher_folder(store, spec.options_of(DistillOptions).teacher)
    if not is_ensemble(folder):
        raise ConfigError(f"{folder} is not a deep ensemble (no {ENSEMBLE_FILE}): nothing to distil")
    _check_unseen(folder, data)


def run_distill(ctx: JobContext, data: SplitData, opts: DistillOptions) -> dict[str, float]:
    """Train the student on the teacher's means, fit the spread, calibrate, evaluate both on the test split."""
    folder = teacher_folder(ctx.store, opts.teacher)
    teacher = Ensemble.load(folder, best_device(), trust_remote_code=ctx.spec.model.trust_remote_code)
    if len(teacher.members) < 2:
        raise ConfigError(f"{folder} is not a deep ensemble of two or more members: nothing to distil")
    _check_unseen(folder, data)
    transfer = load_pool(ctx, data, opts.transfer, labels_required=False) if opts.transfer else None
    if opts.train_on_val:
        data, calibration = calibration_split(data, opts.calibration_fraction, ctx.spec.data.split_seed)
        ctx.store.set_info(ctx.run_id, n_train=len(data.train), n_val=0, n_calibration=len(calibration))
    else:
        calibration = data.val
    ctx.progress(0.0, "the teacher predicts the training molecules", force=True)
    taught_smiles = data.train.smiles + (transfer.smiles if transfer is not None else [])
    taught, taught_spread = teacher.members_predict(taught_smiles)
    # the student learns the members, and is selected on how closely it follows them on the validation molecules
    student_data = replace(data, train=MoleculeData(taught_smiles, taught),
                           val=MoleculeData(data.val.smiles, teacher.members_predict(data.val.smiles)[0],
                                            data.val.names))
    student, _ = train_and_evaluate(ctx, student_data, stage="student", final=False, span=(0.05, 0.95))
    student.standardization = ctx.spec.data.standardization
    spread = SpreadModel.fit(last_layer_inputs(student, taught_smiles), taught_spread)
    distilled = Ensemble([student], spread=spread, trees=teacher.trees)
    cal_mean, cal_spread = distilled.predict(calibration.smiles)
    distilled.conformal = Conformal.calibrate(calibration.labels, cal_mean, cal_spread, opts.coverage)
    mean, std = distilled.predict(data.test.smiles)
    low, high = distilled.conformal.interval(mean, std)
    ctx.store.add_molecules(ctx.run_id, Kinds.PREDICTION, pd.DataFrame(
        {"smiles": data.test.smiles, "label": data.test.labels, "prediction": mean, "split": "test",
         "uncertainty": std, "interval_low": low, "interval_high": high}))
    distilled.save(ctx.artifacts / "model", data.train.smiles, data.train.labels)
    teacher_mean, teacher_std = teacher.predict(data.test.smiles)  # side by side on the same molecules
    teacher_intervals = {} if teacher.conformal is None else \
        interval_quality(data.test.labels, teacher_mean, teacher_std, teacher.conformal)
    return {**{f"test_{k}": v for k, v in regression_metrics(data.test.labels, mean).items()},
            **interval_quality(data.test.labels, mean, std, distilled.conformal),
            "teacher_test_r2": regression_metrics(data.test.labels, teacher_mean)["r2"],
            **{f"teacher_{k}": v for k, v in teacher_intervals.items()},
            "calibration_molecules": len(calibration), "conformal_quantile": distilled.conformal.quantile,
            "transfer_molecules": 0 if transfer is None else len(transfer)}
