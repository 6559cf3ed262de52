"""Pretraining as a recorded job: the corpus minus the job's own molecules, the trainer, the run's loss curve."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from ...columns import SMILES_COLUMNS
from ...pipeline import JobContext, SplitData
from ...errors import DataError
from ...store import RunStore, Tables
from ...tables import columns_of, pick_column, read_table
from .card import write_model_card
from .corpus import PreparedCorpus, load_moses_smiles, prepare_corpus
from .trainer import pretrain
from ...spec import DataSpec, JobSpec, PretrainOptions

__all__ = ["run_pretraining"]


def check_corpus(spec: JobSpec, data: SplitData, store: RunStore) -> None:
    """Before a run: a corpus file, if one is named, can be read and has a SMILES column."""
    opts = spec.options_of(PretrainOptions)
    if opts.corpus:
        pick_column(columns_of(opts.corpus), None, SMILES_COLUMNS, "SMILES")


def _corpus(path: str | None) -> list[str]:
    if path is None:
        return load_moses_smiles()
    frame = read_table(path).frame
    return frame[pick_column(frame.columns, None, SMILES_COLUMNS, "SMILES")].tolist()


def run_pretraining(ctx: JobContext, data: SplitData, opts: PretrainOptions) -> dict[str, float]:
    """Pretrain a backbone (options: :class:`~chemlm_engine.spec.options.PretrainOptions`). Every molecule
    of the job's data — all three splits — is left out of the corpus, so later fine-tuning on it is honest.
    The prepared corpus is cached in the output folder, and training resumes from its checkpoint; the finished
    model gets its card (:func:`~.card.write_model_card`)."""
    output = Path(opts.output) if opts.output else ctx.artifacts / "model"
    task = data.train.smiles + data.val.smiles + data.test.smiles
    cache = output / f"corpus-{opts.descriptor_targets}.parquet"
    if cache.exists():
        prepared = PreparedCorpus.load(cache, opts.descriptor_targets)
    else:
        ctx.progress(0.0, "preparing the corpus (canonical SMILES and descriptors, once)", force=True)
        prepared = prepare_corpus(_corpus(opts.corpus), exclude=set(task), workers=opts.workers,
                                  targets=opts.descriptor_targets)
        if not prepared.smiles:  # before anything is written
            raise DataError(f"no molecule to pretrain on: of the corpus, {prepared.invalid:,} SMILES are invalid and "
                            f"{prepared.excluded:,} are the fine-tuning data's molecules (always left out)")
        output.mkdir(parents=True, exist_ok=True)
        prepared.save(cache)
    ctx.store.set_info(ctx.run_id, corpus_molecules=len(prepared.smiles), corpus_excluded=prepared.excluded,
                       corpus_invalid=prepared.invalid, output=str(output))

    def on_step(p: dict) -> None:
        ctx.check_cancel()
        ctx.progress(p["step"] / p["max_steps"], f"pretraining: step {p['step']}/{p['max_steps']}, "
                                                 f"MLM loss {p['mlm_loss']:.3f}")
        if p["step"] % opts.checkpoint_every == 0 or p["step"] == p["max_steps"]:
            ctx.store.add_table(ctx.run_id, Tables.PRETRAIN_LOSS, [{k: p[k] for k in (
                "step", "mlm_loss", "descriptor_loss", "molecules_per_s") if k in p}])

    result = pretrain(prepared, output, opts, init_from=opts.init_from, vocabulary_smiles=task, progress=on_step,
                      cancel=ctx.cancel)
    source = ctx.spec.data.source
    write_model_card(output, ctx.spec, opts, result, prepared.smiles, task,
                     "Lipophilicity" if source == DataSpec().source else Path(source).name,
                     AutoTokenizer.from_pretrained(output))
    return {"steps": result.steps, "molecules_seen": result.molecules_seen, "excluded": result.excluded,
            **{f"eval_{k}": v for k, v in result.eval.items()}}
