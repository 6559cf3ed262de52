import numpy as np
import pytest
import torch

from chemlm_engine.spec import ModelSpec, TrainConfig
from chemlm_engine.data import MoleculeData
from chemlm_engine.errors import TrainingDivergedError
from chemlm_engine.model import RegressionModel, count_parameters, load_backbone
from chemlm_engine.predict import predict_smiles
from chemlm_engine.inference import cpu_has_native_bf16, resolve_precision
from chemlm_engine.training import TrainCallbacks, fit, length_bucketed_batches


def _model(backbone, **kw) -> RegressionModel:
    return RegressionModel.from_spec(ModelSpec(backbone=str(backbone), head_hidden=32, dropout=0.0, **kw), seed=0)


def test_small_training_set_is_overfit(tiny_backbone, lipo):
    train = lipo.subset(range(48))
    model = _model(tiny_backbone)
    result = fit(model, train, None, TrainConfig(epochs=25, batch_size=16, learning_rate=2e-3,
                                                 head_learning_rate=3e-3, warmup_ratio=0.0))
    first, last = result.history[0].train_mse, result.history[-1].train_mse
    assert last < 0.5 * first


def test_fit_is_deterministic_for_a_seed(tiny_backbone, lipo):
    train, val = lipo.subset(range(40)), lipo.subset(range(40, 60))
    config = TrainConfig(epochs=2, batch_size=8, seed=7)
    a = fit(_model(tiny_backbone), train, val, config)
    b = fit(_model(tiny_backbone), train, val, config)
    assert [m.val_mse for m in a.history] == [m.val_mse for m in b.history]


def test_save_then_load_predicts_identically(tiny_backbone, lipo, tmp_path):
    model = _model(tiny_backbone, pooling="cls")
    fit(model, lipo.subset(range(32)), lipo.subset(range(32, 40)), TrainConfig(epochs=1, batch_size=8))
    smiles = lipo.smiles[100:120]
    before = predict_smiles(model, smiles)["prediction"].to_numpy()
    model.save(tmp_path / "m", lipo.smiles[:32], lipo.labels[:32])
    loaded = RegressionModel.load(tmp_path / "m")
    after = predict_smiles(loaded, smiles)["prediction"].to_numpy()
    np.testing.assert_allclose(before, after, rtol=1e-6, atol=1e-6)
    assert loaded.spec.pooling == "cls"
    assert float(loaded.label_mean) == pytest.approx(float(np.mean(lipo.labels[:32])))


def test_nan_loss_stops_with_a_clear_error(tiny_backbone):
    bad = MoleculeData(["CCO", "CCN", "CCC", "CCCl"], np.array([1.0, np.inf, 2.0, 0.5]))
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        fit(_model(tiny_backbone), bad, None, TrainConfig(epochs=1, batch_size=4))


def test_batches_are_length_bucketed_and_cover_each_index_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 100, size=500).tolist()
    batches = length_bucketed_batches(np.arange(500), lengths, 20, rng, bucket_batches=25)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    assert spread < 15  # random batches of 20 would span ~85


def test_invalid_rows_do_not_stop_a_batch_prediction(tiny_backbone):
    model = _model(tiny_backbone)
    smiles = ["CCO"] * 999 + ["C1CC"]
    frame = predict_smiles(model, smiles)
    assert frame["prediction"].notna().sum() == 999
    assert frame.loc[999, "error"] and np.isnan(frame.loc[999, "prediction"])


def test_trust_remote_code_is_off_unless_asked(tiny_backbone):
    model, tokenizer = load_backbone(tiny_backbone)
    assert getattr(model.config, "auto_map", None) is None
    trainable, total = count_parameters(model)
    assert trainable == total > 0
    assert tokenizer.mask_token == "<mask>"


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_dtype_of_the_training_forward(tiny_backbone, lipo, precision, dtype):
    model = _model(tiny_backbone)
    seen: set[torch.dtype] = set()
    model.head[0].register_forward_hook(lambda _m, _i, out: seen.add(out.dtype) if model.training else None)
    result = fit(model, lipo.subset(range(48)), None, TrainConfig(
        epochs=15, batch_size=16, learning_rate=2e-3, head_learning_rate=3e-3, warmup_ratio=0.0, precision=precision))
    assert seen == {dtype}
    assert result.history[-1].train_mse < 0.7 * result.history[0].train_mse  # bf16 still learns
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32


def test_auto_precision_is_bf16_on_cuda_and_explicit_choices_win():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


def test_fp32_is_honoured_on_cuda_too():
    import contextlib

    import torch

    from chemlm_engine.inference import autocast, resolve_precision

    assert isinstance(autocast(torch.device("cuda"), "fp32"), contextlib.nullcontext)
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_pytorch_held_to_avx2_kernels_trains_in_fp32_and_predicts_in_int8_as_a_plain_avx2_cpu_would():
    import os
    import subprocess
    import sys

    check = ("import torch; from chemlm_engine.inference import cpu_has_amx, cpu_has_native_bf16, resolve_precision, "
             "prediction_precision; cpu = torch.device('cpu'); "
             "print(cpu_has_native_bf16(), cpu_has_amx(), resolve_precision('auto', cpu), prediction_precision(cpu))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True,
                         env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}).stdout.split()
    assert out == ["False", "False", "fp32", "int8"]  # bf16 would be emulated there: several times slower than fp32


def test_layer_decay_slows_each_lower_layer_and_the_embeddings_most(tiny_backbone):
    from chemlm_engine.training import _param_groups

    model = _model(tiny_backbone)
    config = TrainConfig(learning_rate=1e-4, head_learning_rate=1e-3, layer_decay=0.5)
    rate = {id(p): group["lr"] for group in _param_groups(model, config) for p in group["params"]}
    by_name = {name: rate[id(p)] for name, p in model.named_parameters()}
    depth = model.backbone.config.num_hidden_layers
    top = next(n for n in by_name if f"layer.{depth - 1}." in n)
    bottom = next(n for n in by_name if "layer.0." in n)
    embedding = next(n for n in by_name if "word_embeddings" in n)
    assert by_name[top] == pytest.approx(1e-4) and by_name[bottom] == pytest.approx(1e-4 * 0.5 ** (depth - 1))
    assert by_name[embedding] == pytest.approx(1e-4 * 0.5 ** depth)
    assert all(r == pytest.approx(1e-3) for n, r in by_name.items() if n.startswith("head."))
    plain = {group["lr"] for group in _param_groups(model, TrainConfig(head_learning_rate=None))}
    assert plain == {TrainConfig().learning_rate}  # layer_decay 1: one rate for everything


def test_ema_keeps_the_moving_average_of_the_weights_it_trained_through(tiny_backbone, lipo):
    """With ema_decay the kept weights are the exponential moving average of every step's weights (the first step
    starts it), not the last step's."""
    decay, model = 0.8, _model(tiny_backbone)
    weight = model.head[-1].weight
    seen: dict[str, torch.Tensor] = {}

    def step(*_):  # called after each optimiser step (and the average's update)
        seen["last"] = weight.detach().clone()
        seen["average"] = decay * seen["average"] + (1 - decay) * seen["last"] if "average" in seen else seen["last"]

    config = TrainConfig(epochs=2, batch_size=8, ema_decay=decay, select_best=False)
    fit(model, lipo.subset(range(32)), None, config, callbacks=TrainCallbacks(on_batch=step))
    torch.testing.assert_close(model.head[-1].weight.detach(), seen["average"])
    assert not torch.allclose(model.head[-1].weight, seen["last"])
