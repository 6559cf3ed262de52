"""Our LiSSA against pyDVL's ``LissaInfluence`` on the same model, parameters, data and settings: the
default regressor's head (true Hessian, damped until positive definite), Lipophilicity random split seed 0
as training / validation data, the external set as the pool. Prints wall times and score correlations;
writes bench/results/pydvl_compare.json.

pyDVL 0.10 pins numpy<2, so it runs in a virtual environment of its own, fed by a file of tensors:

    python3 -m venv /tmp/pydvl-venv
    /tmp/pydvl-venv/bin/pip install torch==2.13.0 "numpy<2" "pydvl[influence]==0.10.0"
    .venv/bin/python bench/pydvl_compare.py --pydvl-python /tmp/pydvl-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

# pyDVL's "Gauss-Newton" mode is the empirical Fisher (outer products of loss gradients), not our Gauss-Newton
# matrix, so the two are compared on the true Hessian. That is indefinite for the head (GELU), so the damping
# starts at our default 0.01 and grows tenfold until conjugate gradients see a positive definite matrix.
SETTINGS = {"damping": 0.01, "scale": 50.0, "depth": 200, "batch_size": 64}


def head_module(state: dict[str, torch.Tensor]) -> nn.Module:
    """The regression head (Linear, GELU, Dropout, Linear) on pooled embeddings, in eval mode."""
    hidden = state["0.weight"].shape[0]
    head = nn.Sequential(nn.Linear(state["0.weight"].shape[1], hidden), nn.GELU(), nn.Dropout(0.0),
                         nn.Linear(hidden, 1))
    head.load_state_dict(state)
    return head.eval()


def pydvl_worker(tensors: Path, out: Path) -> None:
    """Runs inside the pyDVL environment: needs torch and pydvl only."""
    from pydvl.influence import InfluenceMode
    from pydvl.influence.torch import LissaInfluence
    from torch.utils.data import DataLoader, TensorDataset

    data = torch.load(tensors, weights_only=True)
    head = head_module({k[len("head."):]: v for k, v in data.items() if k.startswith("head.")})

    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((prediction.reshape(-1) - target) ** 2).mean()

    torch.manual_seed(0)
    start = time.perf_counter()
    model = LissaInfluence(head, loss, regularization=SETTINGS["damping"], maxiter=SETTINGS["depth"],
                           scale=SETTINGS["scale"], rtol=0.0, warn_on_max_iteration=False)
    model.fit(DataLoader(TensorDataset(data["x_train"], data["y_train"]), batch_size=SETTINGS["batch_size"]))
    # pyDVL solves one inverse-HVP per validation molecule (as a matrix); the mean over them is the
    # influence on the mean validation loss.
    scores = model.influences(data["x_val"], data["y_val"], data["x_pool"], data["y_pool"],
                              mode=InfluenceMode.Up).mean(0)
    torch.save({"scores": scores.detach(), "seconds": torch.tensor(time.perf_counter() - start)}, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pydvl-python", default="/tmp/pydvl-venv/bin/python")
    parser.add_argument("--model", default="assets/lipo-regressor")
    parser.add_argument("--pool", type=Path, default=Path("../shared/data/external_lipophilicity.csv"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/pydvl_compare.json"))
    args = parser.parse_args()

    from scipy.stats import pearsonr, spearmanr

    from chemlm_engine.spec.config import DataSpec
    from chemlm_engine.data import read_csv
    from chemlm_engine.jobs import load_split_data
    from chemlm_engine.methods.influence import (InfluenceDivergedError, LissaConfig, TransformerInfluence,
                                                 conjugate_gradient, lissa, mean_grad, score_pool)
    from chemlm_engine.model import RegressionModel

    data = load_split_data(DataSpec(split_seed=0))
    pool, _ = read_csv(args.pool)
    model = RegressionModel.load(args.model, "cpu")
    inf = TransformerInfluence(model, "head")
    train = inf.features(data.train.smiles, data.train.labels)
    val = inf.features(data.val.smiles, data.val.labels)
    pool_in = inf.features(pool.smiles, pool.labels)
    curvature = inf.curvature("hessian")
    g_val = mean_grad(inf.loss, inf.params, val)
    while True:
        try:
            reference = score_pool(inf, pool_in, conjugate_gradient(curvature, train, g_val, SETTINGS["damping"],
                                                                    max_iter=100).vector)
            break
        except InfluenceDivergedError:
            SETTINGS["damping"] *= 10
    config = LissaConfig(damping=SETTINGS["damping"], scale=SETTINGS["scale"], depth=SETTINGS["depth"], repeats=1,
                         batch_size=SETTINGS["batch_size"])

    start = time.perf_counter()
    ours = score_pool(inf, pool_in, lissa(curvature, train, mean_grad(inf.loss, inf.params, val), config).vector)
    ours_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        pooled = {name: model.pool(x, mask) for name, (x, mask, _) in
                  {"x_train": train, "x_val": val, "x_pool": pool_in}.items()}
        labels = {"y_train": train[2], "y_val": val[2], "y_pool": pool_in[2]}
        head = {f"head.{k}": v for k, v in model.head.state_dict().items()}
        torch.save({**pooled, **labels, **head}, Path(tmp) / "tensors.pt")
        subprocess.run([args.pydvl_python, __file__, "--worker", str(Path(tmp) / "tensors.pt"),
                        str(Path(tmp) / "scores.pt")], check=True)
        result = torch.load(Path(tmp) / "scores.pt", weights_only=True)
    theirs = result["scores"].numpy()

    row = {"parameters": inf.n_params, "pool": len(pool.smiles), "settings": SETTINGS, "curvature": "hessian",
           "ours_seconds": ours_s, "pydvl_seconds": float(result["seconds"]),
           "spearman_ours_pydvl": float(spearmanr(ours, theirs)[0]),
           "pearson_ours_pydvl": float(pearsonr(ours, theirs)[0]),
           "spearman_ours_cg": float(spearmanr(ours, reference)[0]),
           "spearman_pydvl_cg": float(spearmanr(theirs, reference)[0])}
    print("| solver | wall (s) | Spearman vs CG (100 iterations) |\n|---|---|---|")
    print(f"| ChemLM Studio LiSSA (one solve for the mean validation gradient) | {ours_s:.1f} | "
          f"{row['spearman_ours_cg']:.3f} |")
    print(f"| pyDVL LissaInfluence (one solve per validation molecule) | {row['pydvl_seconds']:.1f} | "
          f"{row['spearman_pydvl_cg']:.3f} |")
    print(f"\nours vs pyDVL: Spearman {row['spearman_ours_pydvl']:.3f}, Pearson {row['pearson_ours_pydvl']:.3f} "
          f"({inf.n_params:,} head parameters, {len(pool.smiles)} pool molecules)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        pydvl_worker(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
