"""Each fine-tuning method's options (other jobs' are in :mod:`.job_options`): a frozen dataclass per method,
values coerced from JSON to the declared types and checked in ``__post_init__`` (an unknown key names the valid
ones), with how many regressors it trains and what its cost estimate leaves out. :mod:`.registry` names which
method takes which."""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ConfigError

__all__ = ["options_from_text", "MethodOptions", "BaselineOptions", "MlmOptions", "CurriculumOptions",
           "UncertaintyOptions", "IsalOptions", "LoraOptions", "InfluenceOptions", "EnsembleOptions", "DistillOptions",
           "DIFFICULTIES", "PACINGS"]


@dataclass(frozen=True)
class MethodOptions:
    """Base of every method's options: values are coerced to the declared types (JSON gives ``3`` for
    ``3.0`` and lists for tuples), then each subclass's :meth:`validate` checks ranges and choices."""

    # Options a hyperparameter search may vary, with the values it tries (``chemlm tune``; besides the recipe's)
    SEARCH: ClassVar[dict[str, tuple]] = {}
    # Options that may name a file or folder (made absolute where one exists: else an id) and folders the job
    # writes (always made absolute): a run recorded in one folder is usable from any (JobSpec.with_absolute_paths)
    PATHS: ClassVar[tuple[str, ...]] = ()
    OUTPUTS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, coerce(f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an out-of-range or unknown value."""

    def check_methods(self, methods: Mapping[str, Any]) -> None:
        """Checks that need the method registry (``name -> Method``; passed in, as the registry imports this
        module): options that name another method."""

    def fits(self) -> int:
        """How many regressors a job with these options trains (what its cost estimate counts)."""
        return 1

    def fit_sizes(self, train: int) -> list[int]:
        """The training molecules of each fit on a training split of ``train`` (what a cost estimate counts)."""
        return [train] * self.fits()

    def cost_note(self) -> str | None:
        """Work a cost estimate does not count in fits × epochs, in words (``None``: none)."""
        return None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MethodOptions:
        """Options from their JSON form; an unknown key is an error naming the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(valid))
        if unknown:
            raise ConfigError(f"unknown option {', '.join(map(repr, unknown))}; valid options: "
                              f"{', '.join(valid) or 'none (this method has no options)'}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON form stored with a run (tuples become lists when written)."""
        return dataclasses.asdict(self)

    def changed(self) -> dict[str, Any]:
        """The options that differ from their declared defaults. Read from the fields, not from a default
        instance: some methods' defaults alone do not validate (a library prediction names no model yet)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {k: v for k, v in self.to_dict().items() if v != defaults[k]}


def options_from_text(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts (the CLI's ``--option``) as a dict: each value read as JSON where it is JSON (``4``,
    ``[2, 4]``, ``true``), else as the text itself; a key given twice or without ``=`` is an error."""
    options: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ConfigError(f"--option {item!r}: give KEY=VALUE, e.g. --option rank=4")
        if key in options:
            raise ConfigError(f"--option {key} is given twice: give each option once")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def coerce(name: str, value: Any, hint: Any, what: str = "option") -> Any:
    """``value`` (as JSON gives it) as the declared type ``hint``, or :class:`ConfigError` naming the ``what``."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{what} {name!r} needs a value")
    kind = next(t for t in allowed if t is not type(None))
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{what} {name!r} must be a list, not {value!r}")
        return tuple(coerce(name, v, typing.get_args(kind)[0], what) for v in value)
    if kind is bool and isinstance(value, bool) or kind is str and isinstance(value, str):
        return value
    if kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if kind is int and not float(value).is_integer():
            raise ConfigError(f"{what} {name!r} must be a whole number, not {value!r}")
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"{what} {name!r} must be a finite number, not {value!r}")
        return kind(value)
    raise ConfigError(f"{what} {name!r} must be {getattr(kind, '__name__', kind)}, not {value!r}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"option {name!r} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class BaselineOptions(MethodOptions):
    # Fit on training + validation for the fixed number of epochs (no model selection), as for a model that ships.
    train_on_val: bool = False


@dataclass(frozen=True)
class MlmOptions(MethodOptions):
    mlm_epochs: int = 3
    mlm_batch_size: int = 32
    mlm_learning_rate: float = 1e-4

    def validate(self) -> None:
        _check(self.mlm_epochs >= 1 and self.mlm_batch_size >= 1, "mlm_epochs and mlm_batch_size must be positive")
        _check(self.mlm_learning_rate > 0, "mlm_learning_rate must be positive")

    def cost_note(self) -> str | None:
        return "plus the masked-LM epochs"


DIFFICULTIES = ("smiles_length", "heavy_atoms", "tokens")
PACINGS = ("linear", "sqrt", "step")


@dataclass(frozen=True)
class CurriculumOptions(MethodOptions):
    difficulty: str = "smiles_length"  # smiles_length | heavy_atoms | tokens
    pacing: str = "linear"  # linear | sqrt | step
    pacing_steps: int = 4

    def validate(self) -> None:
        _choice("difficulty", self.difficulty, DIFFICULTIES)
        _choice("pacing", self.pacing, PACINGS)
        _check(self.pacing_steps >= 1, "pacing_steps must be positive")


@dataclass(frozen=True)
class UncertaintyOptions(MethodOptions):
    PATHS = ("pool",)
    # What a sweep compares, first the method's own (its largest N is the model kept); strategy picks one.
    STRATEGIES: ClassVar[tuple[str, ...]] = ("uncertainty", "random")
    strategy: str = "uncertainty"  # uncertainty | random (the control)
    initial_size: int | None = None  # default: 500, at most a quarter of the training split
    acquire: int = 256
    rounds: int = 1
    passes: int = 20  # MC-dropout passes
    mc_scope: str = "head"  # head | full
    pool: str | None = None  # CSV of unlabelled-then-labelled molecules; default: the unlabelled training split
    sweep: tuple[int, ...] = ()  # one fit per N for both strategies, from the same initial model

    def validate(self) -> None:
        _choice("strategy", self.strategy, self.STRATEGIES)
        _choice("mc_scope", self.mc_scope, ("head", "full"))
        _check(self.acquire >= 1 and self.rounds >= 1 and self.passes >= 2,
               "acquire and rounds must be positive, passes at least 2")
        _check(self.initial_size is None or self.initial_size >= 1, "initial_size must be positive")
        _check(all(n >= 1 for n in self.sweep), "sweep sizes must be positive")

    def fits(self) -> int:
        return 1 + (len(self.STRATEGIES) * len(self.sweep) if self.sweep else self.rounds)

    def fit_sizes(self, train: int) -> list[int]:
        # the labelled start (unmeasured candidates of a pool file: all of the split), then what each fit acquired
        start = train if self.pool else self.initial_size or min(500, train // 4)
        grown = ([n for _ in self.STRATEGIES for n in self.sweep] if self.sweep
                 else [r * self.acquire for r in range(1, self.rounds + 1)])
        # without a pool file the pool is the rest of the split; a file's size is not known here
        return [start, *(start + n if self.pool else min(start + n, train) for n in grown)]


@dataclass(frozen=True)
class IsalOptions(UncertaintyOptions):
    """Influence selection for active learning (Liu et al., ICCV 2021) for regression: a pool molecule's score is
    its expected influence on the validation loss, its unknown label taken as the mean of the model's MC-dropout
    predictive distribution. Sweeps compare it with uncertainty sampling and random acquisition."""

    STRATEGIES: ClassVar[tuple[str, ...]] = ("isal", "uncertainty", "random")
    strategy: str = "isal"  # isal | uncertainty | random (the controls)
    scope: str = "head"  # tracked parameters: head | last_layer | last_N
    solver: str = "cg"  # cg | exact: LiSSA is not offered (the quick ranking must not be solver noise)
    damping: float = 0.01
    cg_iterations: int = 50

    def validate(self) -> None:
        super().validate()
        _choice("solver", self.solver, ("cg", "exact"))
        _check(self.scope in ("head", "last_layer") or
               (self.scope.startswith("last_") and self.scope[5:].isdigit() and int(self.scope[5:]) >= 1),
               f"option 'scope' must be head, last_layer or last_N, not {self.scope!r}")
        _check(self.damping >= 0 and self.cg_iterations >= 1, "damping must be non-negative, cg_iterations positive")

    def cost_note(self) -> str | None:
        return "plus one inverse-HVP solve per scoring (seconds at scope head)"


@dataclass(frozen=True)
class LoraOptions(MethodOptions):
    SEARCH: ClassVar[dict[str, tuple]] = {"rank": (2, 4, 8, 16)}
    rank: int = 8
    alpha: int = 16
    lora_dropout: float = 0.1
    sweep_ranks: tuple[int, ...] = ()  # one fit per rank, stored as a table; the last rank's model is kept

    def validate(self) -> None:
        _check(self.rank >= 1 and self.alpha >= 1 and all(r >= 1 for r in self.sweep_ranks),
               "rank, alpha and sweep_ranks must be positive")
        _check(0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)")

    def fits(self) -> int:
        return max(len(self.sweep_ranks), 1)


@dataclass(frozen=True)
class InfluenceOptions(MethodOptions):
    PATHS = ("pool",)
    pool: str | None = None  # CSV of external molecules; default: a held-out pool_fraction of the training split
    pool_fraction: float = 0.3
    corrupt_fraction: float = 0.0  # labels of this share of the pool shifted by ±3σ (do the scores find them?)
    k: tuple[int, ...] = (16, 32, 64, 100)
    scope: str = "last_layer"  # head | last_layer | last_N | all
    solver: str = "lissa"  # lissa | cg | exact
    curvature: str = "gauss-newton"  # gauss-newton | hessian
    damping: float = 0.01
    scale: float = 50.0
    depth: int = 200
    repeats: int = 2
    lissa_batch_size: int = 64
    cg_iterations: int = 50
    seed: int = 0  # LiSSA's sampling seed
    score_shards: int = 1  # on a cluster: the pool is scored in this many shards
    skip_suspects: bool = False  # leave suspected mislabelled molecules out of the top-k

    _LISSA: ClassVar[tuple[str, ...]] = ("scale", "depth", "repeats", "lissa_batch_size", "seed")

    def __post_init__(self) -> None:
        super().__post_init__()
        # another solver's settings change nothing: kept at their defaults, so that runs differing only there are
        # one configuration (Compare groups runs by their options) and a run does not record what it did not use
        unused = {"lissa": ("cg_iterations",), "cg": self._LISSA, "exact": (*self._LISSA, "cg_iterations")}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in unused[self.solver]:
            object.__setattr__(self, name, defaults[name])

    def validate(self) -> None:
        _choice("solver", self.solver, ("lissa", "cg", "exact"))
        _choice("curvature", self.curvature, ("gauss-newton", "hessian"))
        _check(self.scope in ("head", "last_layer", "all") or
               (self.scope.startswith("last_") and self.scope[5:].isdigit() and int(self.scope[5:]) >= 1),
               f"option 'scope' must be head, last_layer, last_N or all, not {self.scope!r}")
        _check(0 < self.pool_fraction < 1 and 0 <= self.corrupt_fraction <= 1,
               "pool_fraction must be in (0, 1) and corrupt_fraction in [0, 1]")
        _check(len(self.k) > 0 and all(k >= 1 for k in self.k), "k must be a non-empty list of positive sizes")
        _check(self.damping >= 0 and self.scale > 0, "damping must be non-negative and scale positive")
        _check(min(self.depth, self.repeats, self.lissa_batch_size, self.cg_iterations, self.score_shards) >= 1,
               "depth, repeats, lissa_batch_size, cg_iterations and score_shards must be positive")

    def fits(self) -> int:
        return 2 + 2 * len(self.k)  # the base model, the whole-pool control, top-k and random per k

    def fit_sizes(self, train: int) -> list[int]:
        # the base model without the held-out pool, the whole pool added back, then k of it per fit (top-k, random);
        # a pool file's size is not known here
        held = 0 if self.pool else int(train * self.pool_fraction)
        base = train - held
        return [base, base + held, *(base + (min(k, held) if held else k) for k in self.k for _ in ("top-k", "random"))]

    def cost_note(self) -> str | None:
        solve = {"lissa": f"LiSSA, {self.repeats} × {self.depth} steps: minutes at scope last_layer",
                 "cg": f"conjugate gradients, at most {self.cg_iterations} iterations",
                 "exact": "the exact Hessian: seconds at scope head, out of reach beyond"}[self.solver]
        return f"plus the inverse-HVP solve ({solve})"


@dataclass(frozen=True)
class EnsembleOptions(MethodOptions):
    members: int = 5
    coverage: float = 0.9  # of the split-conformal interval
    # Fit on training + validation; the conformal calibration then holds out calibration_fraction of them.
    train_on_val: bool = False
    calibration_fraction: float = 0.1
    # > 0: each member holds out this share of its own training molecules (its seed picks them) and keeps its
    # best epoch on them; 0: members keep their last epoch. The calibration molecules are never used either way.
    member_selection: float = 0.0
    # > 0: gradient-boosted trees on RDKit descriptors and Morgan counts are fitted on the members' training molecules
    # and get this weight in the prediction (the calibration part preferred 0.5 for the shipped recipe); 0: none.
    tree_weight: float = 0.5

    def validate(self) -> None:
        _check(self.members >= 2, "an ensemble needs at least 2 members")
        _check(0 <= self.tree_weight <= 1, "tree_weight must be in [0, 1]")
        _check(0 < self.coverage < 1 and 0 < self.calibration_fraction <= 0.5,
               "coverage must be in (0, 1) and calibration_fraction in (0, 0.5]")
        _check(0 <= self.member_selection <= 0.5, "member_selection must be in [0, 0.5]")

    def fits(self) -> int:
        return self.members


@dataclass(frozen=True)
class DistillOptions(MethodOptions):
    """One student regressor learns a finished ensemble's mean (on the job's training molecules and, with
    ``train_on_val``, its validation ones); a ridge on the student's last-layer inputs learns the members' spread;
    the conformal interval is recalibrated on molecules neither saw. One forward pass instead of the members'."""

    PATHS = ("teacher", "transfer")

    teacher: str = ""  # a finished ensemble run's id, or an ensemble folder
    coverage: float = 0.9
    train_on_val: bool = False  # as the ensemble's: then calibration_fraction of them is held out to calibrate
    calibration_fraction: float = 0.1
    transfer: str = ""  # a CSV of unlabelled SMILES the teacher labels for the student too (e.g. a library)

    def validate(self) -> None:
        _check(bool(self.teacher), "option 'teacher' names the ensemble to distil (a run id or a folder)")
        _check(0 < self.coverage < 1 and 0 < self.calibration_fraction <= 0.5,
               "coverage must be in (0, 1) and calibration_fraction in (0, 0.5]")

    def cost_note(self) -> str | None:
        return "plus the teacher's predictions on the training (and transfer) molecules (one pass of every member)"
