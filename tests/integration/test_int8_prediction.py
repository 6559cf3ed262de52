"""int8 prediction: on a CPU without native bf16 a loaded model predicts with its backbone's linear layers quantised,
close to fp32, and never with weights older than the model's."""
import numpy as np
import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from chemlm_engine import inference
from chemlm_engine.inference import predict_values, prediction_precision, runnable
from chemlm_engine.methods.peft import apply_strategy
from chemlm_engine.model import RegressionModel
from chemlm_engine.spec import ModelSpec
from chemlm_engine.predict import load_predictor


def _spread(values: np.ndarray) -> float:
    return float(values.max() - values.min())


def test_a_cpu_predicts_in_int8_unless_it_has_amx_and_trains_in_bf16_where_that_is_native(monkeypatch):
    cpu = torch.device("cpu")
    for native_bf16, amx, predicts, trains in ((False, False, "int8", "fp32"),  # AVX2 only
                                               (True, False, "int8", "bf16"),  # AVX512-BF16 without AMX (AMD Zen 4)
                                               (True, True, "auto", "bf16")):  # Intel Xeon with AMX
        monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: native_bf16)
        monkeypatch.setattr(inference, "cpu_has_amx", lambda: amx)
        assert prediction_precision(cpu) == predicts
        assert inference.resolve_precision("auto", cpu) == trains
        assert inference.resolve_precision(prediction_precision(cpu), cpu) == ("bf16" if amx else "int8")
        assert inference.cpu_kind().endswith("(bf16 autocast)" if amx else "(int8 linear layers)")  # as benches say
    assert prediction_precision(torch.device("cuda")) == "auto"


def test_load_predictor_quantises_on_a_cpu_without_amx(monkeypatch, regressor_dir, lipo):
    monkeypatch.setattr(inference, "cpu_has_amx", lambda: False)
    model = load_predictor(regressor_dir, "cpu")
    assert model.inference_precision == "int8"
    smiles = lipo.smiles[:64]
    quantised = predict_values(model, smiles)
    twin = runnable(model)
    assert twin is not model and any(isinstance(m, DynamicInt8Linear) for m in twin.backbone.modules())
    assert not any(isinstance(m, DynamicInt8Linear) for m in model.modules())  # the model itself stays trainable
    model.inference_precision = "fp32"
    exact = predict_values(model, smiles)
    assert _spread(exact) > 0
    assert np.abs(quantised - exact).max() < 0.1 * _spread(exact)
    assert not np.array_equal(quantised, exact)  # it really ran the int8 layers


@pytest.mark.parametrize("strategy", ["lora", "ia3"])
def test_an_adapter_model_predicts_in_int8_with_its_adapters(strategy, tiny_backbone, lipo):
    model = RegressionModel.from_spec(ModelSpec(backbone=str(tiny_backbone), head_hidden=8), seed=0)
    model = apply_strategy(model, strategy, rank=4)
    model.set_label_scaler(lipo.labels)
    size = {"lora": 0.2, "ia3": 2.0}[strategy]  # IA3's scales act on a tiny untrained model's small activations
    with torch.no_grad():  # adapters as training leaves them: changing the backbone's output (LoRA's B starts at 0)
        for name, weight in model.backbone.named_parameters():
            if "lora_" in name or "ia3_" in name:
                weight.add_(size * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    smiles = lipo.smiles[:64]
    model.inference_precision = "fp32"
    exact = predict_values(model, smiles)
    with model.backbone.disable_adapter():
        without_adapters = predict_values(model, smiles)
    model.inference_precision = "int8"
    quantised = predict_values(model, smiles)  # LoRA's layers read lora_A.weight: a quantised one had none
    assert np.abs(quantised - exact).max() < 0.1 * _spread(exact)
    assert np.abs(without_adapters - exact).max() > 5 * np.abs(quantised - exact).max()
    assert type(model.backbone).__name__.startswith("Peft")  # the model itself keeps its adapters, trainable


def test_int8_prediction_follows_weights_changed_after_it(regressor_dir, lipo):
    model = load_predictor(regressor_dir, "cpu")
    model.inference_precision = "int8"
    smiles = lipo.smiles[:64]
    before = predict_values(model, smiles)
    assert runnable(model) is runnable(model)  # unchanged weights: the same twin, not rebuilt per call
    with torch.no_grad():  # as an optimiser step would: in place
        for layer in model.backbone.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(1.5)
    after = predict_values(model, smiles)
    model.inference_precision = "fp32"
    exact = predict_values(model, smiles)
    assert np.abs(after - exact).max() < 0.1 * _spread(exact)
    assert np.abs(after - before).max() > np.abs(after - exact).max()


def test_int8_is_refused_off_the_cpu(regressor_dir):
    model = load_predictor(regressor_dir, "cpu")
    model.inference_precision = "int8"
    model.to("meta")
    with pytest.raises(ValueError, match="CPU"):
        runnable(model)


def test_long_molecules_are_predicted_fewer_at_a_time_and_the_same_as_alone(monkeypatch, regressor_dir, lipo):
    model = RegressionModel.load(regressor_dir)
    model.inference_precision = "fp32"
    encoded = sorted(inference.encode_smiles(model.tokenizer, lipo.smiles[:40], model.max_tokens), key=len)
    alone = np.array([inference.predict_encoded(model, [ids], batch_size=1)[0] for ids in encoded])
    budget = 16 * len(encoded[15])  # the 16 shortest fit
    monkeypatch.setitem(inference.PREDICT_TOKENS, "cpu", budget)
    batches: list[list[int]] = []
    real = inference.collate
    monkeypatch.setattr(inference, "collate", lambda ids, *a: batches.append([len(i) for i in ids]) or real(ids, *a))
    predicted = inference.predict_encoded(model, encoded, batch_size=16)
    assert len(batches[0]) == 16 and len(batches) > 3  # more batches than 40 molecules 16 at a time
    assert all(len(b) * max(b) <= budget for b in batches) and sum(map(len, batches)) == len(encoded)
    np.testing.assert_allclose(predicted, alone, atol=1e-5)


def test_the_students_features_keep_to_the_same_token_budget(monkeypatch, regressor_dir, lipo):
    model = RegressionModel.load(regressor_dir)
    model.inference_precision = "fp32"
    smiles = list(lipo.smiles[:40])
    alone = np.vstack([inference.last_layer_inputs(model, [s]) for s in smiles])
    lengths = sorted(len(ids) for ids in inference.encode_smiles(model.tokenizer, smiles, model.max_tokens))
    budget = 16 * lengths[15]
    monkeypatch.setitem(inference.PREDICT_TOKENS, "cpu", budget)
    batches: list[list[int]] = []
    real = inference.collate
    monkeypatch.setattr(inference, "collate", lambda ids, *a: batches.append([len(i) for i in ids]) or real(ids, *a))
    together = inference.last_layer_inputs(model, smiles, batch_size=16)
    assert len(batches) > 3 and all(len(b) * max(b) <= budget for b in batches)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_an_int8_prediction_does_not_depend_on_the_molecules_it_is_batched_with(monkeypatch, regressor_dir, lipo):
    """Dynamic quantisation scales a batch by its own extremes: each layer's range is pinned instead, and each molecule
    is padded to its own width (its tokens rounded up to 8; a batch holds one width), not to a longer neighbour's
    (float noise crossed an int8 step: one member of the shipped ensemble moved by 0.023). So a molecule gets one
    number whichever file, and whichever neighbours in it, it comes with."""
    model = load_predictor(regressor_dir, "cpu")
    model.inference_precision = "int8"
    batches: list[tuple[set[int], int]] = []
    real = inference.collate

    def collate(encoded, *args):
        padded = real(encoded, *args)
        batches.append(({-(-len(ids) // 8) * 8 for ids in encoded}, padded[0].shape[1]))
        return padded
    monkeypatch.setattr(inference, "collate", collate)
    probe = list(lipo.smiles[:8])
    alone = np.array([predict_values(model, [s])[0] for s in probe])
    for neighbours in (lipo.smiles[100:140], sorted(lipo.smiles[:400], key=len)[-24:]):  # other sizes and extremes
        beside = predict_values(model, probe + list(neighbours))[:8]  # per-batch scales: off by ~0.6 % of the spread
        np.testing.assert_allclose(beside, alone, rtol=0, atol=1e-6)
    assert all(own == {width} for own, width in batches)
