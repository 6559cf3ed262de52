from chemlm_engine.tokenizer import SPECIAL_TOKENS, build_smiles_tokenizer, load_tokenizer, smiles_tokens


def test_atom_level_tokens_and_special_tokens(tmp_path):
    assert smiles_tokens("Clc1ccc[nH]1Br") == ["Cl", "c", "1", "c", "c", "c", "[nH]", "1", "Br"]
    assert smiles_tokens("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    tokenizer = build_smiles_tokenizer(["CCO", "c1ccccc1"])
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    ids = loaded("CCO")["input_ids"]
    assert loaded.convert_ids_to_tokens(ids) == ["<bos>", "C", "C", "O", "<eos>"]
    for name, token in SPECIAL_TOKENS.items():
        assert getattr(loaded, name) == token
    assert loaded.convert_ids_to_tokens(loaded("[Xe]")["input_ids"])[1] == "<unk>"
