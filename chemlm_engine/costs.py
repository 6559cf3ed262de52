"""What a launch costs before it runs: epochs × the training molecules of each fit, and a time from the training speed
this machine measured in earlier runs of the same backbone (a stated rough guess when there are none)."""
from __future__ import annotations

import math
from itertools import islice
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ChemLMError
from .spec import JobSpec
from .store import RunStore

__all__ = ["Cost", "estimate_cost", "fits_of", "LIPOPHILICITY_SIZE"]

LIPOPHILICITY_SIZE = 4200
# Molecule-epochs per second of ChemLM-mini on 2 CPU cores (bf16, validation included), used until this
# machine has finished a run of its own: 20 epochs of 3,360 molecules take about 8 minutes here.
_GUESS_SPEED = 140.0
# Seconds a job spends outside its epochs (a process, the libraries, data, model, test predictions and saving),
# used until this machine has finished a run: a 100-molecule, 1-epoch job here takes ~15 s in all.
_GUESS_START = 15.0


@dataclass(frozen=True)
class Cost:
    fits: int
    molecule_epochs: int  # training molecules × epochs, summed over every fit
    seconds: float | None
    basis: str  # where the speed comes from
    extra: str = ""  # what the estimate leaves out

    def describe(self) -> str:
        time = "" if self.seconds is None else f" ≈ **{_duration(self.seconds)}** ({self.basis})"
        return (f"{self.fits} fit{'s' * (self.fits != 1)}, {self.molecule_epochs:,} molecule-epochs in all{time}"
                + (f"; {self.extra}" if self.extra else ""))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def fits_of(spec: JobSpec) -> int:
    """How many regressors a job trains."""
    return spec.method_options.fits()


def _train_size(spec: JobSpec) -> int:
    if spec.data.subset is not None:
        total = spec.data.subset
    elif spec.data.source == "lipophilicity":
        total = LIPOPHILICITY_SIZE
    else:
        with open(spec.data.source, "rb") as handle:
            total = max(sum(1 for _ in handle) - 1, 0)
    return math.ceil(total * spec.data.fractions[0])


def _times_one_fit(run) -> bool:
    """Whether a run's ``train_seconds`` timed one fit of ``n_train`` × ``epochs_run`` and nothing else (not a
    sweep's five fits, not masked-LM epochs before the fit)."""
    try:
        spec = JobSpec.from_dict(run.spec)
        return fits_of(spec) == 1 and spec.method_options.cost_note() is None
    except (ChemLMError, TypeError, ValueError):  # a spec an older or newer version wrote
        return False


def _measured_speed(store: RunStore, backbone: str) -> tuple[float, float, int] | None:
    """Molecule-epochs per second of this store's last finished single-fit runs of ``backbone`` (the median: one
    run slowed by other work on the cores does not set it), and the median seconds such a run spent outside its
    epochs."""
    runs = list(islice((r for r in store.runs(status="finished") if r.spec.get("model", {}).get("backbone") == backbone
                        and r.metrics.get("train_seconds") and r.info.get("n_train") and r.metrics.get("epochs_run")
                        and _times_one_fit(r)), 10))  # the newest ten: older specs are not parsed at all
    if not runs:
        return None
    speed = float(np.median([r.info["n_train"] * r.metrics["epochs_run"] / r.metrics["train_seconds"] for r in runs]))
    outside = [r.duration - r.metrics["train_seconds"] for r in runs if r.duration is not None]
    start = max(float(np.median(outside)), 0.0) if outside else _GUESS_START
    return speed, start, len(runs)


def estimate_cost(specs: Sequence[JobSpec], store: RunStore) -> Cost:
    """The cost of launching ``specs`` (same backbone assumed for the speed)."""
    fits = sum(fits_of(s) for s in specs)
    work = sum(sum(s.method_options.fit_sizes(_train_size(s))) * s.train.epochs for s in specs)
    extra = [note for note in dict.fromkeys(s.method_options.cost_note() for s in specs) if note]
    measured = _measured_speed(store, specs[0].model.backbone) if specs else None
    if measured is not None:
        speed, start, n = measured
        basis = (f"at {speed:,.0f} molecule-epochs/s and {start:.0f} s of start-up per job, measured in {n} "
                 f"earlier run{'s' * (n != 1)} here")
    else:
        speed, start = _GUESS_SPEED, _GUESS_START
        name = Path(specs[0].model.backbone).name if specs else ""
        basis = f"a rough guess for {name} on 2 CPU cores, start-up included; no run of {name} finished here yet"
    seconds = work / speed + start * len(specs) if work else None
    waiting = sum(r.status in ("queued", "running") for r in store.runs())
    if waiting:
        extra.append(f"after the {waiting} job{'s' * (waiting != 1)} already queued or running")
    return Cost(fits, work, seconds, basis, "; ".join(extra))
