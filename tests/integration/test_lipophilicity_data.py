"""The bundled Lipophilicity set: complete, split deterministically, scaffolds kept apart (loads all 4,200)."""
import numpy as np
import pytest

from chemlm_engine.data import length_bins, make_split, murcko_scaffold, random_split, scaffold_split
from chemlm_engine.tokenizer import build_smiles_tokenizer


def test_bundled_lipophilicity_is_complete(lipo):
    assert len(lipo) == 4200
    assert lipo.labels.min() >= -1.6 and lipo.labels.max() <= 4.6


@pytest.mark.parametrize("kind", ["random", "scaffold"])
def test_split_is_deterministic_disjoint_and_complete(lipo, kind):
    a = make_split(lipo, kind, seed=3)
    b = make_split(lipo, kind, seed=3)
    c = make_split(lipo, kind, seed=4)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.test, c.test)
    parts = [set(a.train), set(a.val), set(a.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == len(lipo)
    assert abs(len(a.train) - 0.8 * len(lipo)) <= 0.02 * len(lipo)


def test_scaffold_split_shares_no_scaffold(lipo):
    split = scaffold_split(lipo.smiles, seed=0)
    scaffolds = {part: {murcko_scaffold(lipo.smiles[i]) for i in getattr(split, part)}
                 for part in ("train", "val", "test")}
    assert not scaffolds["train"] & scaffolds["test"]
    assert not scaffolds["train"] & scaffolds["val"]
    assert not scaffolds["val"] & scaffolds["test"]


def test_length_bins_cover_every_molecule(lipo):
    bins = length_bins(lipo.smiles, 20)
    lengths = [len(s) for s in lipo.smiles]
    assert len(bins) <= 20 and bins["cumulative_frequency"].iloc[-1] == len(lipo)
    assert bins["bin_start"].iloc[0] == min(lengths) and bins["bin_end"].iloc[-1] >= max(lengths)
    # whole characters, no shared edge: a SMILES of 24 characters is in exactly one bin's range
    assert (bins["bin_start"].iloc[1:].to_numpy() == bins["bin_end"].iloc[:-1].to_numpy() + 1).all()
    for _, row in bins.iterrows():
        assert row["frequency"] == sum(row["bin_start"] <= n <= row["bin_end"] for n in lengths)


def test_every_lipophilicity_smiles_round_trips(lipo):
    tokenizer = build_smiles_tokenizer(lipo.smiles)
    for smi in lipo.smiles:
        ids = tokenizer(smi, add_special_tokens=False)["input_ids"]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert "<unk>" not in tokens
        assert "".join(tokens) == smi


def test_the_standardised_set_is_read_back_from_its_disk_cache_and_only_for_the_same_settings(tmp_path, monkeypatch):
    from chemlm_engine import data as data_module
    from chemlm_engine.molecules import Standardization

    monkeypatch.setenv("CHEMLM_CACHE", str(tmp_path))
    data_module._lipophilicity.cache_clear()
    fresh, report = data_module.load_lipophilicity()
    assert len(list(tmp_path.glob("lipophilicity-*.json"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("read afresh although cached")

    monkeypatch.setattr(data_module, "molecules_from_frame", no_reading)
    data_module._lipophilicity.cache_clear()  # a new process, as far as the in-memory cache knows
    cached, cached_report = data_module.load_lipophilicity()
    assert cached.smiles == fresh.smiles and cached.names == fresh.names
    assert np.array_equal(cached.labels, fresh.labels) and cached_report == report
    with pytest.raises(AssertionError, match="afresh"):  # other settings are another entry
        data_module.load_lipophilicity(Standardization(enabled=False))
    next(tmp_path.glob("lipophilicity-*.json")).write_text("{damaged")
    data_module._lipophilicity.cache_clear()
    with pytest.raises(AssertionError, match="afresh"):  # a damaged entry is read afresh, not trusted
        data_module.load_lipophilicity()
    data_module._lipophilicity.cache_clear()
