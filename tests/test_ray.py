"""sksiamese.distributed on a local Ray cluster (the optional ``ray`` extra).

One small cluster on this machine (on 127.0.0.1, 2 CPUs, run directories under
pytest's tmp_path, session files in a short temporary directory removed at the
end) is shared by the tests of the module; Ray Train workers ask for half a CPU
each so that two fit on a 2-core machine. These tests are skipped where Ray is
not installed; the checks of arguments run without a cluster.
"""

import os
import pickle
import re
import runpy
import shutil
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import sksiamese
from sksiamese import SiameseClassifier
from sksiamese.distributed import (
    _raise_trial_error,
    _require,
    _shards,
    fit_distributed,
    ray_backend,
    tune_search,
)

# Ray's own modules warn about their own deprecated settings on import.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

SMALL = dict(hidden_layer_sizes=(32,), embedding_dim=8, batch_size=32, random_state=0)
EXAMPLE = Path(__file__).parents[1] / "examples" / "distributed" / "grid_search_ray.py"


@pytest.fixture(scope="module")
def split(iris):
    X, y = iris
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def ray_dir(tmp_path_factory):
    """A local Ray cluster for the module; yields a directory for its runs."""
    with pytest.MonkeyPatch.context() as mp:
        # Ray's switch for a one-machine cluster on the loopback address (read
        # when Ray is imported; inherited by its processes).
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = pytest.importorskip("ray")
        pytest.importorskip("ray.train")
        # Ray's session files go to a short directory of their own: its socket
        # paths must stay under 108 bytes, which pytest's (and xdist's) nested
        # temporary directories can exceed.
        session_dir = tempfile.mkdtemp(prefix="sks-ray-")
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=session_dir,
        )
        try:
            yield tmp_path_factory.mktemp("ray")
        finally:
            ray.shutdown()
            shutil.rmtree(session_dir, ignore_errors=True)


# -- without a cluster -------------------------------------------------------------


def test_missing_dependency_says_how_to_install():
    msg = 'install it with: pip install "sksiamese[ray]"'
    with pytest.raises(ImportError, match=re.escape(msg)):
        _require("sksiamese_missing_dependency", "fit_distributed")


def test_shards_are_stratified_and_disjoint():
    codes = np.array([0] * 6 + [1] * 4 + [2] * 2)
    train = np.arange(len(codes))
    shards = _shards(codes, train, num_workers=2, seed=0)
    assert [np.bincount(codes[s]).tolist() for s in shards] == [[3, 2, 1]] * 2
    assert sorted(np.concatenate(shards).tolist()) == train.tolist()


def test_shards_refuse_too_many_workers():
    codes = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="Too few training samples for num_workers=3"):
        _shards(codes, np.arange(4), num_workers=3, seed=0)


@pytest.mark.parametrize(
    "kwargs, error, msg",
    [
        ({"num_workers": 0}, ValueError, "num_workers must be a positive int; got 0."),
        (
            {"cpus_per_worker": -1},
            ValueError,
            "cpus_per_worker must be a positive, finite number; got -1.",
        ),
        (
            {"cpus_per_worker": float("nan")},
            ValueError,
            "cpus_per_worker must be a positive, finite number; got nan.",
        ),
        (
            {"cpus_per_worker": float("inf")},
            ValueError,
            "cpus_per_worker must be a positive, finite number; got inf.",
        ),
    ],
)
def test_fit_distributed_checks_arguments(iris, kwargs, error, msg):
    X, y = iris
    with pytest.raises(error, match=re.escape(msg)):
        fit_distributed(SiameseClassifier(), X, y, **kwargs)


def test_fit_distributed_needs_a_siamese_estimator(iris):
    X, y = iris
    msg = "fit_distributed trains a sksiamese SiameseClassifier; got LogisticRegression"
    with pytest.raises(TypeError, match=re.escape(msg)):
        fit_distributed(LogisticRegression(), X, y)


@pytest.mark.parametrize(
    "estimator, space, kwargs, msg",
    [
        (
            SiameseClassifier(early_stopping=True),
            {"learning_rate": [0.1]},
            {},
            "param_space names parameters that SiameseClassifier does not have: "
            "['learning_rate'].",
        ),
        (
            SiameseClassifier(early_stopping=True),
            {"lr": 0.01},
            {"metric": "accuracy"},
            "metric must be one of ['train_loss', 'valid_balanced_accuracy', "
            "'valid_loss']; got 'accuracy'.",
        ),
        (
            SiameseClassifier(early_stopping=True, validation_fraction=0),
            {"lr": 0.01},
            {},
            "set early_stopping=True and validation_fraction > 0 on the estimator.",
        ),
        (
            SiameseClassifier(),
            {"lr": 0.01},
            {},
            "set early_stopping=True and validation_fraction > 0 on the estimator.",
        ),
        *[
            (
                SiameseClassifier(early_stopping=True),
                {"lr": 0.01},
                {"cpus_per_trial": value},
                f"cpus_per_trial must be a positive, finite number; got {value}.",
            )
            for value in (float("nan"), float("inf"), 0)
        ],
        *[
            (
                SiameseClassifier(early_stopping=True),
                {"lr": 0.01},
                {"grace_period": value},
                f"grace_period must be a positive int; got {value}.",
            )
            for value in (0, -1, 1.5)
        ],
        *[
            (
                SiameseClassifier(early_stopping=True),
                {"lr": 0.01},
                {"reduction_factor": value},
                "reduction_factor must be a finite number greater than 1; got "
                f"{value}.",
            )
            for value in (1, 0.5, float("nan"))
        ],
    ],
)
def test_tune_search_checks_arguments(iris, estimator, space, kwargs, msg):
    X, y = iris
    with pytest.raises(ValueError, match=re.escape(msg)):
        tune_search(estimator, X, y, space, **kwargs)


def test_tune_search_checks_the_data_before_any_trial(iris):
    # As fit does; before, every trial failed with this error in turn.
    X, y = iris
    msg = (
        "SiameseClassifier.fit needs samples of at least 2 classes to form "
        "different pairs; got 1 class: [0.0]."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        tune_search(
            SiameseClassifier(early_stopping=True), X, np.zeros(len(y)), {"lr": 0.01}
        )


@pytest.mark.parametrize(
    "space, msg",
    [
        (
            lambda tune: {"lr": 0.01},
            "param_space holds fixed values only, nothing to search",
        ),
        (
            lambda tune: {"lr": tune.grid_search([1e-3, 1e-2]), "weight_decay": 0.0},
            "param_space gives tune.grid_search for ['lr']",
        ),
        (
            lambda tune: {"lr": tune.sample_from(lambda config: 0.01)},
            "param_space gives tune.sample_from for ['lr']",
        ),
    ],
    ids=["fixed-values", "grid-search", "sample-from"],
)
def test_tune_search_needs_a_space_optuna_can_sample(iris, space, msg):
    # Optuna refused both, in the middle of Ray's start, without naming them.
    tune = pytest.importorskip("ray.tune")
    X, y = iris
    with pytest.raises(ValueError, match=re.escape(msg)):
        tune_search(SiameseClassifier(early_stopping=True), X, y, space(tune))


def test_the_error_of_failed_trials_is_the_trials_own():
    exceptions = pytest.importorskip("ray.exceptions")
    cause = ValueError("lr must be positive.")
    wrapped = exceptions.RayTaskError(
        "train",
        "\x1b[36mray::ImplicitFunc.train()\x1b[39m Traceback ...",
        cause,
        proctitle="ray::ImplicitFunc.train",
        pid=1,
        ip="127.0.0.1",
    ).as_instanceof_cause()
    with pytest.raises(ValueError) as info:
        _raise_trial_error(wrapped, n_trials=3)
    assert info.value is cause
    # Failures of Ray itself: its message, first and without terminal colours.
    lost = exceptions.RayError("\x1b[31mThe actor died.\x1b[39m")
    msg = "The actor died.\nEvery trial of tune_search failed (3); this is the first"
    with pytest.raises(RuntimeError, match="^" + re.escape(msg)):
        _raise_trial_error(lost, n_trials=3)


def test_ray_backend_checks_arguments():
    msg = "threads_per_job must be a positive int; got 0."
    with pytest.raises(ValueError, match=re.escape(msg)):
        with ray_backend(threads_per_job=0):
            pass


# -- data-parallel training with Ray Train --------------------------------------------


def test_fit_distributed_trains_an_ordinary_estimator(ray_dir, split, tmp_path):
    # One test, so that one Ray Train run serves every check (under pytest-xdist,
    # tests of a module may run in different processes).
    X_train, X_test, y_train, y_test = split
    clf = SiameseClassifier(max_epochs=15, early_stopping=True, **SMALL)
    out = fit_distributed(
        clf,
        X_train,
        y_train,
        num_workers=2,
        cpus_per_worker=0.5,
        storage_path=ray_dir / "train",
    )
    assert out is clf
    # Three balanced classes: chance is 1/3.
    assert clf.score(X_test, y_test) > 0.8

    assert clf.n_features_in_ == X_test.shape[1]
    assert clf.n_epochs_ == len(clf.history_) >= 1
    assert all({"train_loss", "valid_loss"} <= set(row) for row in clf.history_)
    proba = clf.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(clf.predict(X_test), clf.classes_[proba.argmax(1)])

    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X_test), clf.predict(X_test))
    clf.save(tmp_path / "model.zip")
    loaded = sksiamese.load(tmp_path / "model.zip")
    np.testing.assert_allclose(loaded.predict_proba(X_test), proba, rtol=1e-6)
    # Its parameters are the estimator's own: it clones like any other.
    assert clone(clf).get_params() == clf.get_params()


def test_fit_distributed_warns_as_fit_when_not_converged(ray_dir, split):
    X_train, _, y_train, _ = split
    clf = SiameseClassifier(max_epochs=2, early_stopping=True, **SMALL)
    msg = (
        "SiameseClassifier stopped after max_epochs=2 epochs while the held-out "
        "loss was still improving"
    )
    with pytest.warns(ConvergenceWarning, match=re.escape(msg)):
        fit_distributed(
            clf,
            X_train,
            y_train,
            num_workers=1,
            cpus_per_worker=0.5,
            storage_path=ray_dir / "train_short",
        )
    assert clf.n_epochs_ == 2


# -- hyperparameter search with Ray Tune and Optuna ----------------------------------


def test_tune_search_runs_and_refits(ray_dir, split):
    pytest.importorskip("optuna")
    tune = pytest.importorskip("ray.tune")
    X_train, X_test, y_train, y_test = split
    max_epochs = 4
    found = tune_search(
        SiameseClassifier(max_epochs=max_epochs, early_stopping=True, **SMALL),
        X_train,
        y_train,
        {
            "lr": tune.loguniform(1e-3, 3e-2),
            "margin": tune.uniform(0.5, 2.0),
            "n_iter_no_change": 3,
        },
        num_samples=3,
        grace_period=1,
        cpus_per_trial=1,
        storage_path=ray_dir / "tune",
        random_state=0,
    )
    assert set(found.best_params) == {"lr", "margin", "n_iter_no_change"}
    assert 1e-3 <= found.best_params["lr"] <= 3e-2
    assert found.best_params["n_iter_no_change"] == 3
    results = found.results
    assert len(results) == 3
    # Every trial reported once per epoch, and none ran past max_epochs.
    assert results["training_iteration"].between(1, max_epochs).all()
    # The best score is the best report of any trial at any epoch (the table
    # holds each trial's last report, which may come after its best), and
    # best_params are those of the trial that made it.
    best_of = {
        r.metrics["trial_id"]: r.metrics_dataframe["valid_balanced_accuracy"].max()
        for r in found.result_grid
    }
    assert found.best_score == max(best_of.values())
    assert found.best_score >= results["valid_balanced_accuracy"].max()
    made_it = results["trial_id"].map(best_of) == found.best_score
    configs = results.loc[made_it, ["config/lr", "config/margin"]]
    best = (found.best_params["lr"], found.best_params["margin"])
    assert best in set(configs.itertuples(index=False, name=None))
    assert found.best_estimator.get_params()["lr"] == found.best_params["lr"]
    assert found.best_estimator.score(X_test, y_test) > 0.6


def test_tune_search_raises_the_error_its_trials_failed_with(ray_dir, iris):
    pytest.importorskip("optuna")
    tune = pytest.importorskip("ray.tune")
    X, y = iris
    msg = "The 'lr' parameter of SiameseClassifier must be a float in the range"
    with pytest.raises(ValueError, match="^" + re.escape(msg)) as info:
        tune_search(
            SiameseClassifier(max_epochs=1, early_stopping=True, **SMALL),
            X,
            y,
            # Values the estimator refuses, in every trial.
            {"lr": tune.uniform(-2.0, -1.0)},
            num_samples=1,
            storage_path=ray_dir / "tune_failed",
        )
    assert "\x1b[" not in str(info.value)


# -- scikit-learn's GridSearchCV on joblib's Ray backend -------------------------------


def test_grid_search_example_on_ray(ray_dir, split):
    X_train, X_test, y_train, y_test = split
    example = runpy.run_path(str(EXAMPLE), run_name="grid_search_ray")
    grid = {"loss": ["contrastive"], "margin": [0.5, 1.0]}
    search = example["search_on_ray"](
        X_train, y_train, param_grid=grid, max_epochs=5, n_jobs=2
    )
    # Same folds and seeds: the same scores as the same search run here.
    local = example["make_search"](grid, max_epochs=5).fit(X_train, y_train)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    assert search.best_params_ == local.best_params_
    assert search.score(X_test, y_test) > 0.6


def test_ray_backend_runs_as_many_jobs_as_fit_on_the_cluster(ray_dir):
    # Two CPUs: one job of 2 threads at a time. Ray's pool started one per
    # CPU, and waited for ever for CPUs to place the second.
    from joblib.parallel import get_active_backend

    for threads, jobs in [(1, 2), (2, 1), (3, 1)]:
        with ray_backend(threads_per_job=threads):
            assert get_active_backend()[1] == jobs


def test_ray_backend_runs_torch_with_one_thread_per_job(ray_dir):
    def job():  # defined here: Ray's workers cannot import this module
        import torch

        return os.getpid(), torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")

    with ray_backend(n_jobs=2):
        jobs = joblib.Parallel()(joblib.delayed(job)() for _ in range(2))
    # The jobs ran in Ray's worker processes, not in this one (which runs
    # torch with one thread too), each with one torch and OpenMP thread.
    # (threads_per_job=2 would need a cluster of 4 CPUs for two jobs.)
    assert jobs == [(jobs[0][0], 1, "1"), (jobs[1][0], 1, "1")]
    assert os.getpid() not in {pid for pid, _, _ in jobs}
