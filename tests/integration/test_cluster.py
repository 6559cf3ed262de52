"""Ray scale-out on a local Ray (2 CPUs): same results as the single-process paths."""
import time

import numpy as np
import pandas as pd
import pytest
import ray

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.store import Tables
from chemlm_engine.errors import DataError
from chemlm_engine.jobs import run_job
from chemlm_engine.manager import JobManager
from chemlm_engine.library import predict_library, predict_library_ray
from chemlm_engine.methods.influence import TransformerInfluence, last_layer_inverse, mean_grad, score_molecules
from chemlm_engine.model import RegressionModel, save_training_set


@pytest.fixture(scope="module")
def local_ray():
    from chemlm_engine.cluster import connect

    connect(num_cpus=2)
    yield
    ray.shutdown()


def _spec(backbone, **kw) -> JobSpec:
    return JobSpec(data=DataSpec(subset=120, **kw.pop("data", {})),
                   model=ModelSpec(backbone=str(backbone), head_hidden=16),
                   train=TrainConfig(epochs=2, batch_size=16, seed=3), **kw)


def test_a_ray_job_matches_the_thread_executor(local_ray, tiny_backbone, store):
    local = store.get_run(run_job(_spec(tiny_backbone), store))
    manager = JobManager(store, executor="ray")
    remote = manager.wait(manager.submit(_spec(tiny_backbone)), timeout=300)
    assert remote.status == "finished" and remote.pid != local.pid  # ran in a Ray worker
    for key in ("test_mse", "test_r2", "val_mse"):
        assert remote.metrics[key] == pytest.approx(local.metrics[key], rel=1e-4)
    assert len(store.epochs(remote.id)) == 2


def test_a_failing_ray_job_is_failed_with_its_traceback(local_ray, tiny_backbone, store, tmp_path):
    manager = JobManager(store, executor="ray")
    with pytest.raises(DataError, match="No such file"):  # refused before a run exists
        manager.submit(_spec(tiny_backbone, data={"source": "/no/such/file.csv"}))
    assert store.runs() == []
    (tmp_path / "empty-backbone").mkdir()  # a folder, so only loading it on the worker fails
    record = manager.wait(manager.submit(_spec(tmp_path / "empty-backbone")), timeout=120)
    assert record.status == "failed" and "cannot load backbone" in record.error and "Traceback" in record.traceback


def test_a_running_ray_job_can_be_cancelled(local_ray, tiny_backbone, store):
    manager = JobManager(store, executor="ray")
    spec = JobSpec(data=DataSpec(subset=400), model=ModelSpec(backbone=str(tiny_backbone)),
                   train=TrainConfig(epochs=200, batch_size=8))
    run_id = manager.submit(spec)
    for _ in range(600):
        if store.get_run(run_id).status == "running" and len(store.epochs(run_id)) >= 1:
            break
        time.sleep(0.2)
    manager.cancel(run_id)
    record = manager.wait(run_id, timeout=120)
    assert record.status == "cancelled" and len(store.epochs(run_id)) < 200


def test_a_lora_rank_sweep_fans_out_and_matches(local_ray, tiny_backbone, store):
    spec = _spec(tiny_backbone, method="lora", options={"sweep_ranks": [2, 4]})
    local = store.table(run_job(spec, store), Tables.SWEEP)
    manager = JobManager(store, executor="ray")
    remote_id = manager.submit(spec)
    assert manager.wait(remote_id, timeout=300).status == "finished"
    remote = store.table(remote_id, Tables.SWEEP)
    assert list(remote["rank"]) == [2, 4]
    np.testing.assert_allclose(remote["test_mse"], local["test_mse"], rtol=1e-4)


def test_sharded_influence_scores_equal_single_process_scores(local_ray, tiny_backbone, lipo):
    from chemlm_engine.cluster import ray_map
    from chemlm_engine.methods.influence import score_molecules_sharded

    model = RegressionModel.from_spec(ModelSpec(backbone=str(tiny_backbone), head_hidden=8), seed=0)
    model.set_label_scaler(lipo.labels[:80])
    inf = TransformerInfluence(model, "last_layer")
    train = inf.features(lipo.smiles[:80], lipo.labels[:80])
    direction = mean_grad(inf.loss, inf.params, inf.features(lipo.smiles[80:100], lipo.labels[80:100]))
    inverse = last_layer_inverse(inf, train)
    pool_smiles, pool_labels = lipo.smiles[100:250], lipo.labels[100:250]
    single = score_molecules(inf, pool_smiles, pool_labels, direction, inverse, chunk=32)
    sharded = score_molecules_sharded(inf, pool_smiles, pool_labels, direction, inverse, shards=2,
                                      map_fn=ray_map, chunk=32)
    for a, b in zip(single, sharded):
        assert len(b) == 150
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_library_prediction_on_ray_equals_the_local_predictor_row_for_row(local_ray, tiny_backbone, lipo, tmp_path):
    """Blank and ragged rows first (one output row each), then enough molecules for several Ray batches."""
    model = RegressionModel.from_spec(ModelSpec(backbone=str(tiny_backbone), head_hidden=8), seed=0)
    model.set_label_scaler(lipo.labels)
    model.save(tmp_path / "model")
    save_training_set(tmp_path / "model", lipo.smiles[1500:1800], lipo.labels[1500:1800])  # for the domain
    smiles = lipo.smiles[:1500] + ["not a smiles", "C1CC"]
    body = "\n".join(f"m{i},{s}" for i, s in enumerate(smiles))
    (tmp_path / "lib.csv").write_text(f"id,smiles\na,CCO\n\nc,CCN\nd,CCC,extra\ne,c1ccccc1\n{body}\n")
    local = predict_library(tmp_path / "model", tmp_path / "lib.csv", tmp_path / "local.parquet", chunk_rows=400)
    pd.DataFrame({"note": ["the user's own"]}).to_parquet(tmp_path / "ray.input.parquet")  # where the input was staged
    remote = predict_library_ray(tmp_path / "model", tmp_path / "lib.csv", tmp_path / "ray", batch_rows=400)
    assert pd.read_parquet(tmp_path / "ray.input.parquet")["note"].tolist() == ["the user's own"]  # not deleted
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["local.parquet", "ray.input.parquet"]  # no copy left
    assert (local.rows, local.invalid) == (remote.rows, remote.invalid) == (1507, 4)
    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "ray").sort_values("row", ignore_index=True)
    assert a["row"].tolist() == b["row"].tolist() == list(range(1, 1508))  # the input's rows, in both
    assert list(b["id"][:5]) == ["a", "", "c", "d", "e"] and b["error"][1] == "empty"
    assert list(a["id"]) == list(b["id"]) and list(a["error"].fillna("")) == list(b["error"].fillna(""))
    np.testing.assert_allclose(b["prediction"], a["prediction"], rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(b["similarity"], a["similarity"], equal_nan=True)  # both check the domain
    assert a["similarity"].notna().sum() == 1503


def test_a_ray_library_refuses_a_folder_that_holds_files_and_workers_that_leave_no_cpu_to_read(local_ray, tmp_path):
    """A rerun into the same folder held every row twice; --workers 2 on a 2-CPU Ray waited forever, silently."""
    from ray.exceptions import RayError

    from chemlm_engine.errors import ConfigError, OutputError

    (tmp_path / "lib.csv").write_text("smiles\nCCO\n")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "part-0.parquet").write_bytes(b"an earlier run's")
    with pytest.raises(OutputError, match="already holds files: Ray adds its parts beside what is there"):
        predict_library_ray(tmp_path / "model", tmp_path / "lib.csv", tmp_path / "ray")
    with pytest.raises(ConfigError, match="2 workers of 1 CPU leave none of this machine's 2 CPUs .* use --workers 1"):
        predict_library_ray(tmp_path / "model", tmp_path / "lib.csv", tmp_path / "fresh", workers=2)
    with pytest.raises(ConfigError, match="--workers must be 1 or more, not 0"):  # it failed in Ray with a traceback
        predict_library_ray(tmp_path / "model", tmp_path / "lib.csv", tmp_path / "fresh", workers=0)
    with pytest.raises(RayError):  # a model Ray's actors cannot load: the staged copy of the library goes too
        predict_library_ray(tmp_path / "nomodel", tmp_path / "lib.csv", tmp_path / "fresh")
    assert not list(tmp_path.glob(".*")) and not list(tmp_path.glob("*.input.parquet"))


def test_a_local_ray_listens_on_loopback_only():
    import subprocess
    import sys

    code = ("from chemlm_engine.cluster import connect; connect(num_cpus=1); import ray; "
            "print(sorted({n['NodeManagerAddress'] for n in ray.nodes()})); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.stdout.strip().splitlines()[-1] == "['127.0.0.1']", out.stderr[-2000:]


