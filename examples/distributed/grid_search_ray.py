"""Grid search for a SiameseClassifier on a Ray (or Dask) cluster.

scikit-learn's own :class:`~sklearn.model_selection.GridSearchCV` runs its fits
through joblib; joblib's ``ray`` backend sends each fit (one parameter setting on
one fold) to a Ray cluster as one job. Nothing in the search changes: only the
``with ray_backend():`` block around ``fit``.

Threads. A fit uses torch, and torch starts one thread per core by default: on a
machine running one job per core, every job would then fight every other for
the cores. :func:`sksiamese.distributed.ray_backend` reserves
``threads_per_job`` CPUs for each job (default 1) and starts its worker process
with ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` set to the same number, which
torch reads at import. Use ``threads_per_job=k`` for fewer, bigger jobs (large
networks, images).

Dask works the same way through joblib's ``dask`` backend (``pip install
"dask[distributed]"``); Dask's worker processes start with ``OMP_NUM_THREADS=1``
already::

    from dask.distributed import Client

    client = Client(n_workers=2, threads_per_worker=1)  # or Client("host:8786")
    with joblib.parallel_config(backend="dask"):
        search.fit(X, y)

Needs ``pip install "sksiamese[ray]"``. Not part of the example gallery, which
is built without Ray.

Run: ``python examples/distributed/grid_search_ray.py [--n-jobs 2]
[--address ADDRESS] [--backend {ray,dask}]``. Without ``--address`` a local
cluster is started on this machine and stopped at the end.
"""

import argparse
import time

import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sksiamese import SiameseClassifier
from sksiamese.distributed import ray_backend

PARAM_GRID = {"loss": ["contrastive", "triplet"], "margin": [0.5, 1.0]}


def make_search(param_grid=None, max_epochs=30):
    """The search itself: plain scikit-learn, nothing Ray-specific."""
    return GridSearchCV(
        SiameseClassifier(max_epochs=max_epochs, random_state=0),
        PARAM_GRID if param_grid is None else param_grid,
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
    )


def search_on_ray(X, y, param_grid=None, max_epochs=30, n_jobs=-1, threads_per_job=1):
    """Fit the grid search with its jobs on the Ray cluster."""
    search = make_search(param_grid, max_epochs)
    with ray_backend(n_jobs=n_jobs, threads_per_job=threads_per_job):
        search.fit(X, y)
    return search


def search_on_dask(X, y, param_grid=None, max_epochs=30, n_jobs=-1):
    """Fit the grid search with its jobs on the Dask cluster of the current
    ``dask.distributed.Client``."""
    search = make_search(param_grid, max_epochs)
    with joblib.parallel_config(backend="dask", n_jobs=n_jobs):
        search.fit(X, y)
    return search


def print_table(search):
    res = search.cv_results_
    print(f"{'loss':<12} {'margin':>6} {'balanced acc.':>14} {'fit (s)':>8}")
    for i, params in enumerate(res["params"]):
        print(
            f"{params['loss']:<12} {params['margin']:>6} "
            f"{res['mean_test_score'][i]:>8.3f} ± {res['std_test_score'][i]:.3f} "
            f"{res['mean_fit_time'][i]:>8.2f}"
        )
    print(f"best: {search.best_params_}  ({search.best_score_:.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--address", default=None, help="an existing cluster")
    parser.add_argument("--backend", choices=["ray", "dask"], default="ray")
    args = parser.parse_args()
    X, y = load_breast_cancer(return_X_y=True)

    start = time.perf_counter()
    if args.backend == "ray":
        import ray

        if args.address:
            ray.init(address=args.address)
        else:
            ray.init(num_cpus=args.n_jobs, include_dashboard=False)
        try:
            search = search_on_ray(X, y, max_epochs=args.max_epochs, n_jobs=args.n_jobs)
        finally:
            ray.shutdown()
    else:
        from dask.distributed import Client

        if args.address:
            client = Client(args.address)
        else:
            client = Client(n_workers=args.n_jobs, threads_per_worker=1)
        with client:
            search = search_on_dask(
                X, y, max_epochs=args.max_epochs, n_jobs=args.n_jobs
            )
    print_table(search)
    print(
        f"{len(search.cv_results_['params']) * 3} fits in "
        f"{time.perf_counter() - start:.0f} s on {args.backend}"
    )


if __name__ == "__main__":
    main()
