"""Dask (the optional ``dask`` extra): scikit-learn's GridSearchCV under joblib's
``dask`` backend, and dask-ml's ``Incremental`` driving ``partial_fit`` chunk by
chunk. Skipped where Dask or dask-ml is not installed."""

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from sksiamese import SiameseClassifier

SMALL = dict(hidden_layer_sizes=(32,), embedding_dim=8, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def client():
    """An in-process Dask cluster: two workers of one thread each."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.Client(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as client:
        yield client


def test_grid_search_under_the_dask_backend(client, breast_cancer):
    X_train, X_test, y_train, y_test = breast_cancer
    grid = {"loss": ["prototype", "contrastive"], "n_neighbors": [1, 5]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)

    def search():
        return GridSearchCV(
            SiameseClassifier(max_epochs=5, **SMALL),
            grid,
            cv=cv,
            scoring="balanced_accuracy",
            n_jobs=2,
        )

    distributed = pytest.importorskip("dask.distributed")
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_config(backend="dask"):
            on_dask = search().fit(X_train, y_train)
    # The fits ran as tasks on the cluster's workers (12 fits: 4 settings x 3
    # folds, batched by joblib), not in this thread.
    assert len(tasks.data) >= 1
    assert {t["worker"] for t in tasks.data} <= set(client.scheduler_info()["workers"])
    # Same folds and seeds: the same scores as an ordinary local search.
    local = search().set_params(n_jobs=1).fit(X_train, y_train)
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
    )
    assert on_dask.best_params_ == local.best_params_
    assert balanced_accuracy_score(y_test, on_dask.predict(X_test)) > 0.85


def test_dask_ml_incremental_drives_partial_fit(breast_cancer):
    da = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X_train, X_test, y_train, y_test = breast_cancer
    chunks = 100
    X_dask = da.from_array(X_train, chunks=(chunks, X_train.shape[1]))
    y_dask = da.from_array(y_train, chunks=chunks)
    inc = wrappers.Incremental(SiameseClassifier(**SMALL), scoring="accuracy")
    inc.fit(X_dask, y_dask, classes=[0, 1])
    clf = inc.estimator_
    # One partial_fit call (one epoch) per block of rows.
    n_blocks = int(np.ceil(len(X_train) / chunks))
    assert clf.n_epochs_ == n_blocks
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    pred = inc.predict(da.from_array(X_test, chunks=chunks)).compute()
    np.testing.assert_array_equal(pred, clf.predict(X_test))
    assert balanced_accuracy_score(y_test, pred) > 0.85
