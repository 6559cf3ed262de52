"""Launch costs: fits × epochs × training molecules, timed with this store's measured speed."""
from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.costs import estimate_cost, fits_of
from chemlm_engine.store import RunStore


def test_fits_follow_the_method_options():
    assert fits_of(JobSpec()) == 1 and fits_of(JobSpec(method="ensemble", options={"members": 4})) == 4
    assert fits_of(JobSpec(method="influence", options={"k": [8, 16]})) == 6  # base, all-pool, 2 × (top-k, random)
    assert fits_of(JobSpec(method="uncertainty", options={"sweep": [25, 64]})) == 5
    assert fits_of(JobSpec(method="lora", options={"sweep_ranks": [2, 4, 8]})) == 3


def test_the_time_comes_from_runs_measured_here_else_a_stated_guess(tmp_path):
    store = RunStore(home=tmp_path)
    spec = JobSpec(data=DataSpec(subset=500), model=ModelSpec(backbone="some/backbone"), train=TrainConfig(epochs=10))
    guess = estimate_cost([spec], store)
    assert guess.molecule_epochs == 4000 and "rough guess" in guess.basis  # 400 training molecules × 10 epochs
    assert guess.basis.endswith("no run of backbone finished here yet")  # of this backbone: others may have
    assert guess.seconds == 4000 / 140 + 15  # the guessed speed and start-up of one job
    run = store.create_run(spec.to_dict(), "baseline")
    store.set_info(run, n_train=100)
    store.start(run, {})
    store.finish(run, {"train_seconds": 10.0, "epochs_run": 5})  # 50 molecule-epochs per second
    cost = estimate_cost([spec, spec], store)
    assert cost.fits == 2 and "measured in 1 earlier run" in cost.describe() and "start-up" in cost.describe()
    assert 8000 / 50 <= cost.seconds < 8000 / 50 + 2  # this run spent ~0 s outside its epochs
    store.create_run(spec.to_dict(), "baseline")  # queued
    assert "after the 1 job already queued or running" in estimate_cost([spec], store).describe()


def test_only_runs_that_timed_one_plain_fit_set_the_speed(tmp_path):
    store = RunStore(home=tmp_path)
    spec = JobSpec(data=DataSpec(subset=500), model=ModelSpec(backbone="some/backbone"), train=TrainConfig(epochs=10))

    def finished(job: JobSpec, seconds: float) -> None:
        run = store.create_run(job.to_dict(), job.method)
        store.set_info(run, n_train=100)
        store.start(run, {})
        store.finish(run, {"train_seconds": seconds, "epochs_run": 5})

    for seconds in (10.0, 10.0, 100.0):  # 50 molecule-epochs/s twice, once slowed by other work
        finished(spec, seconds)
    finished(JobSpec(method="uncertainty", model=spec.model, options={"sweep": [25, 64]}), 500.0)  # five fits
    finished(JobSpec(method="mlm", model=spec.model), 400.0)  # masked-LM epochs before its fit
    cost = estimate_cost([spec], store)
    assert "at 50 molecule-epochs/s" in cost.basis and "measured in 3 earlier runs" in cost.basis


def test_active_learning_counts_what_each_fit_trains_on_not_the_whole_split(tmp_path):
    store = RunStore(home=tmp_path)
    data, train = DataSpec(subset=300), TrainConfig(epochs=3)  # 240 training molecules: a start of 60
    swept = JobSpec(method="uncertainty", data=data, train=train, options={"sweep": [25, 50]})
    assert estimate_cost([swept], store).molecule_epochs == 3 * (60 + 2 * (85 + 110))  # start, then both strategies
    rounds = JobSpec(method="uncertainty", data=data, train=train, options={"initial_size": 50, "acquire": 100,
                                                                            "rounds": 2})
    assert estimate_cost([rounds], store).molecule_epochs == 3 * (50 + 150 + 240)  # the split holds no more
    assert estimate_cost([JobSpec(data=data, train=train)], store).molecule_epochs == 3 * 240  # one plain fit


def test_influence_counts_its_base_without_the_held_out_pool_and_k_added_back(tmp_path):
    job = JobSpec(method="influence", data=DataSpec(subset=300), train=TrainConfig(epochs=3),
                  options={"k": [8, 16]})  # 240 training molecules: 72 held out as the pool, a base of 168
    cost = estimate_cost([job], RunStore(home=tmp_path))
    assert cost.fits == 6 and cost.molecule_epochs == 3 * (168 + 240 + 2 * (168 + 8) + 2 * (168 + 16))
