"""A job's ETA counts from its first progress report: loading a model or starting helpers is not its pace."""
import time

from chemlm_engine.pipeline import JobContext
from chemlm_engine.spec import JobSpec
from chemlm_engine.store import RunStore


def test_the_first_progress_of_a_run_is_recorded_once_as_where_its_eta_starts(tmp_path):
    store = RunStore(home=tmp_path)
    spec = JobSpec()
    run = store.create_run(spec.to_dict(), "baseline", "eta")
    store.start(run, {})
    ctx = JobContext(spec, store, run)
    ctx.progress(0.0, "loading the model")  # no work done yet
    assert "eta_from" not in store.get_run(run).info
    before = time.time()
    ctx.progress(0.1, "epoch 1")
    since, fraction = store.get_run(run).info["eta_from"]
    assert before <= since <= time.time() and fraction == 0.1
    ctx.progress(0.2, "epoch 1", force=True)
    JobContext(spec, store, run).progress(0.3, "a sweep point on another worker", force=True)
    assert store.get_run(run).info["eta_from"] == [since, 0.1] and store.get_run(run).progress == 0.3
