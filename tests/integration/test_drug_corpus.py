"""The drug-like pretraining corpus (issue #24): no molecule of the excluded set in any charge state, SMILES
long enough to train positions past MOSES' 54 tokens, charged atoms, acids and bases."""
from rdkit import Chem
from transformers import AutoTokenizer

from chemlm_engine.methods.pretrain.drug_corpus import (CorpusRecipe, at_ph74, build_corpus, build_corpus_parallel,
                                                        corpus_statistics, merge_parts, neutral_key, recombine,
                                                        statistics_table)


def test_molecules_get_their_dominant_charge_state_at_ph_7_4():
    assert at_ph74(["CCN", "CC(=O)O", "CCO", "c1ccncc1"]) == ["CC[NH3+]", "CC(=O)[O-]", "CCO", "c1ccncc1"]
    assert neutral_key("CC[NH3+]") == neutral_key("NCC") == "CCN"  # one key for every state and spelling


def test_recombined_molecules_have_the_sizes_asked_for(lipo):
    for low, high in ((20, 40), (70, 120)):
        out = recombine(lipo.smiles[:200], 40, (low, high), seed=1)
        sizes = [Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in out]
        assert len(out) == 40 and min(sizes) >= low and max(sizes) <= high


def test_the_corpus_holds_no_excluded_molecule_and_covers_lengths_charges_acids_and_bases(lipo, tiny_backbone):
    seeds = lipo.smiles[:300]  # seeds from the excluded set itself: only new molecules may come out
    corpus = build_corpus(seeds, exclude=lipo.smiles, recipe=CorpusRecipe(size=400, seed=0))
    banned = {neutral_key(s) for s in lipo.smiles}
    assert len(corpus) > 150 and not [s for s in corpus if neutral_key(s) in banned]
    stats = corpus_statistics(corpus, AutoTokenizer.from_pretrained(tiny_backbone))
    assert (stats["tokens"] > 54).mean() > 0.2 and stats["tokens"].max() > 128  # positions MOSES never reached
    assert (stats["charged_atoms"] > 0).any() and (stats["acid_groups"] > 0).any() and (stats["base_groups"] > 0).any()
    table = statistics_table({"corpus": stats, "Lipophilicity": stats.head(10)})
    assert "| tokens 55–80 |" in table and table.count("\n") == 18


def test_the_corpus_command_writes_the_csv_and_its_card(lipo, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from chemlm_engine.cli import app

    pd.DataFrame({"smiles": lipo.smiles[:200]}).to_csv(tmp_path / "seeds.csv", index=False)
    out = tmp_path / "corpus.csv"
    result = CliRunner().invoke(app, ["corpus", "--seeds", str(tmp_path / "seeds.csv"), "--size", "200",
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    written = pd.read_csv(out)
    assert summary["molecules"] == len(written) > 50 and list(written.columns) == ["smiles"]
    card = out.with_suffix(".md").read_text()
    assert "| this corpus | seeds.csv (" in card and "| Lipophilicity |" in card


def test_a_corpus_built_in_two_processes_is_its_two_seeded_halves_merged(lipo):
    seeds, recipe = lipo.smiles[300:500], CorpusRecipe(size=120, seed=5)
    both = build_corpus_parallel(seeds, lipo.smiles[:300], recipe, workers=2)
    halves = [build_corpus(seeds, lipo.smiles[:300], CorpusRecipe(size=60, seed=s)) for s in (6, 7)]
    assert both == merge_parts(halves, 5) and len(both) > len(halves[0])
    banned = {neutral_key(s) for s in lipo.smiles[:300]}
    assert not [s for s in both if neutral_key(s) in banned]
